/*
 * This process's shard index (see shard.h).
 */
#include "base/shard.h"

int bh__shard_self;
