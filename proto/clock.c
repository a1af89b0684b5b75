/*
 * clock.c - the clock Hive's messages are stamped with (created_ms,
 * started_ms, ...): wall time in unix milliseconds, so that stamps from
 * hived, workers and clients on other hosts compare.
 */
#include "proto_int.h"

#include <time.h>

uint64_t
proto_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
