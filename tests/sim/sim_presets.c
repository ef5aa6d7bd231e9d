/*
 * Canned provider answers. The error bodies copy the shapes the real
 * providers send (Stripe's {"error":{type,code,message}}, Anthropic's
 * {"type":"error","error":{type,message}}, the Google identity toolkit's
 * {"error":{code,message,errors}}) because the gateway's error maps match on
 * exactly those fields.
 */
#include "sim.h"

#include <string.h>

#define IDP_ERR(code, msg)                                                     \
  "{\"error\":{\"code\":" #code ",\"message\":\"" msg "\",\"errors\":"         \
  "[{\"message\":\"" msg "\",\"domain\":\"global\",\"reason\":\"invalid\"}]}}"

static const sim_preset presets[] = {
    /* Stripe */
    {"stripe_500", 500,
     "{\"error\":{\"type\":\"api_error\",\"code\":\"api_error\",\"message\":"
     "\"An unknown error occurred on Stripe's end. (sim)\"}}",
     "Request-Id: req_sim_500\r\n"},
    {"stripe_card_declined", 402,
     "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\","
     "\"decline_code\":\"generic_decline\",\"message\":\"Your card was "
     "declined.\"}}",
     "Request-Id: req_sim_402\r\n"},
    {"stripe_auth", 401,
     "{\"error\":{\"type\":\"invalid_request_error\",\"code\":"
     "\"api_key_invalid\",\"message\":\"Invalid API Key provided\"}}",
     "Request-Id: req_sim_401\r\n"},
    {"stripe_rate_limit", 429,
     "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"rate_limit\","
     "\"message\":\"Request rate limit exceeded. Retry after a short wait. "
     "(sim)\"}}",
     "Retry-After: 2\r\nRequest-Id: req_sim_429\r\n"},
    {"stripe_no_customer", 400,
     "{\"error\":{\"type\":\"invalid_request_error\",\"code\":"
     "\"resource_missing\",\"param\":\"customer\",\"message\":\"No such "
     "customer\"}}",
     "Request-Id: req_sim_400\r\n"},
    /* Anthropic */
    {"anthropic_rate_limit", 429,
     "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
     "\"message\":\"Number of request tokens has exceeded your per-minute "
     "rate limit (sim)\"}}",
     "retry-after: 7\r\nrequest-id: req_sim_429\r\n"},
    {"anthropic_overloaded", 529,
     "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
     "\"message\":\"Overloaded\"}}",
     "request-id: req_sim_529\r\n"},
    {"anthropic_invalid_request", 400,
     "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
     "\"message\":\"messages: at least one message is required\"}}",
     "request-id: req_sim_400\r\n"},
    {"anthropic_auth", 401,
     "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
     "\"message\":\"invalid x-api-key\"}}",
     "request-id: req_sim_401\r\n"},
    {"anthropic_500", 500,
     "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":"
     "\"Internal server error\"}}",
     "request-id: req_sim_500\r\n"},
    /* Identity provider (Google identity toolkit / Firebase Auth REST) */
    {"idp_invalid_password", 400, IDP_ERR(400, "INVALID_PASSWORD"), NULL},
    {"idp_user_disabled", 400, IDP_ERR(400, "USER_DISABLED"), NULL},
    {"idp_email_not_found", 400, IDP_ERR(400, "EMAIL_NOT_FOUND"), NULL},
    {"idp_invalid_login_credentials", 400,
     IDP_ERR(400, "INVALID_LOGIN_CREDENTIALS"), NULL},
    {"idp_too_many_attempts", 400,
     IDP_ERR(400, "TOO_MANY_ATTEMPTS_TRY_LATER : Access to this account has "
                  "been temporarily disabled due to many failed login "
                  "attempts."),
     NULL},
    {"idp_500", 500,
     "{\"error\":{\"code\":500,\"message\":\"Internal error encountered.\","
     "\"errors\":[{\"message\":\"Internal error encountered.\",\"domain\":"
     "\"global\",\"reason\":\"backendError\"}],\"status\":\"INTERNAL\"}}",
     NULL},
};

const sim_preset *sim_preset_find(const char *name) {
  for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
    if (strcmp(presets[i].name, name) == 0) return &presets[i];
  return NULL;
}

json_t *sim_presets_json(void) {
  json_t *arr = json_array();
  for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
    const sim_preset *p = &presets[i];
    json_t *body = json_loads(p->body, 0, NULL);
    json_array_append_new(arr, json_pack("{s:s,s:i,s:o,s:s}", "name", p->name,
                                         "status", p->status, "body",
                                         body ? body : json_null(), "headers",
                                         p->headers ? p->headers : ""));
  }
  return arr;
}

const char *sim_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 422: return "Unprocessable Entity";
  case 425: return "Too Early";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 529: return "Overloaded";
  default: return "Status";
  }
}

/* The canned reply streamed the way Anthropic's Messages API streams: the
 * text deltas concatenate to the non-streaming reply's text. */
#define SSE(name, data) "event: " name "\ndata: " data "\n\n"
const char *const sim_sse_events[] = {
    SSE("message_start",
        "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_sim\",\"type\":"
        "\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"sim\","
        "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_"
        "tokens\":10,\"output_tokens\":1}}}"),
    SSE("content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{"
        "\"type\":\"text\",\"text\":\"\"}}"),
    SSE("ping", "{\"type\":\"ping\"}"),
    SSE("content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"text_delta\",\"text\":\"Thank you\"}}"),
    SSE("content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"text_delta\",\"text\":\" for your review!\"}}"),
    SSE("content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"text_delta\",\"text\":\" (sim)\"}}"),
    SSE("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"),
    SSE("message_delta",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":8}}"),
    SSE("message_stop", "{\"type\":\"message_stop\"}"),
};
const int sim_sse_nevents =
    (int)(sizeof(sim_sse_events) / sizeof(sim_sse_events[0]));
const char sim_sse_error_event[] =
    SSE("error", "{\"type\":\"error\",\"error\":{\"type\":"
                 "\"overloaded_error\",\"message\":\"Overloaded\"}}");
