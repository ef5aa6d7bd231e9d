# Writes OUT, a C header holding every schema/billing/NNN_*.sql file as a
# byte array, in file-name order: the plugin's migrations travel inside the
# .so, so an installed plugin needs no schema files beside it.
#   cmake -DSCHEMA_DIR=... -DOUT=... -P embed_schema.cmake
file(GLOB files "${SCHEMA_DIR}/[0-9][0-9][0-9]_*.sql")
list(SORT files)
set(body "/* generated from schema/billing by embed_schema.cmake */\n")
string(APPEND body "#ifndef BILLING_SCHEMA_H\n#define BILLING_SCHEMA_H\n\n")
set(table "")
foreach(f ${files})
  get_filename_component(name ${f} NAME)
  string(SUBSTRING ${name} 0 3 num)
  math(EXPR version "${num}")
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char billing_schema_${num}[] = {${bytes}0};\n")
  string(APPEND table "    {${version}, billing_schema_${num}},\n")
endforeach()
string(APPEND body "\nstatic const struct {\n  int version;\n  const char *sql;\n")
string(APPEND body "} billing_migrations[] = {\n${table}};\n\n#endif\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
file(REMOVE ${OUT}.tmp)
