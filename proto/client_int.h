/*
 * proto/client_int.h: what libimgstore's tests and fuzzers reach inside the client. Not
 * installed.
 */
#ifndef IMS_PROTO_CLIENT_INT_H
#define IMS_PROTO_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/client.h"

/* The largest answer a client accepts: a hostile server cannot make it hold more. */
#define IMS_CLIENT__MAX_RESPONSE ((size_t)64 << 20)

/**
 * Turn an HTTP answer into a decoded response or an errno with a message, as
 * ims_client_call() does once the transfer is over; sets ims_client_last_code().
 */
int ims_client__decode(ims_client *c, long status, const char *content_type, const uint8_t *body,
		       size_t len, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp);

#endif
