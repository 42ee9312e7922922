/*
 * proto/client.h: libimgstore, the C client of imgstored's RPC API (libcurl underneath).
 *
 * Requests and responses are the protobuf-c messages generated from the .proto files in
 * proto/imgstore/v1/ (include "imgstore/v1/image.pb-c.h" and friends). One ims_client is used by
 * one thread at a time; it keeps its connection alive between calls.
 */
#ifndef IMS_PROTO_CLIENT_H
#define IMS_PROTO_CLIENT_H

#include <protobuf-c/protobuf-c.h>

#include "proto/rpc.h"

typedef struct ims_client ims_client;

#define IMS_CLIENT_OPTS_VERSION 1
typedef struct {
	unsigned version;
	/* "https://HOST:PORT", "http://HOST:PORT", or a Unix socket: "/path" or "unix:/path" */
	const char *server;
	const char *token;     /* bearer token, or NULL */
	const char *ca_file;   /* CA that signed the server's certificate; NULL: the system's */
	const char *cert_file; /* client certificate (PEM), when the server asks for one */
	const char *key_file;
	/* a whole call; 0: 60000. When set, it is also sent as the call's budget
	 * (Connect-Timeout-Ms): the server stops at it and answers deadline_exceeded, which
	 * the call returns as -ETIMEDOUT, as it does when it gives up waiting itself. */
	long timeout_ms;
	long connect_timeout_ms; /* 0: 5000 */
} ims_client_opts;
#define IMS_CLIENT_OPTS_INIT                                                                       \
	{                                                                                          \
		.version = IMS_CLIENT_OPTS_VERSION                                                 \
	}

/**
 * Make a client; nothing is sent before the first call. The strings of @p opts are copied.
 *
 * @returns -EINVAL for a bad server address or options, -ENOENT if ca_file, cert_file or
 *          key_file does not exist.
 */
int ims_client_open(ims_client **out, const ims_client_opts *opts);
void ims_client_close(ims_client *c);

/**
 * Call @p method ("imgstore.v1.ImageService/CreateImage"; a leading '/' is allowed).
 *
 * An error answer without a Connect JSON body (a proxy's 502, say) gets the code Connect
 * derives from the HTTP status (404 unimplemented, 503 unavailable, ...) and a message naming
 * the server. Answers are capped at 64 MiB.
 *
 * @param[out] resp the decoded response; free with protobuf_c_message_free_unpacked(resp, NULL).
 * @returns 0; the errno of the server's code (ims_rpc_errno_from_code) with ims_error_last()
 *          the server's message; -ECONNREFUSED, -ETIMEDOUT or -EHOSTUNREACH with a message
 *          naming the server when it cannot be reached; -ECONNRESET when the connection
 *          breaks during the call; -EPROTO for an answer that is not a Connect response
 *          (wrong content type, undecodable, over 64 MiB) or a failed TLS handshake (the
 *          server's certificate not signed by ca_file, a client certificate refused);
 *          -EINVAL for a bad method name.
 */
int ims_client_call(ims_client *c, const char *method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp);

/**
 * The Connect code of the last failed call (IMS_RPC_OK after a success): the server's, or
 * unavailable when it could not be reached, deadline_exceeded after a timeout, unknown for a
 * protocol error.
 */
ims_rpc_code ims_client_last_code(const ims_client *c);

/**
 * The reason of the last failed call's typed error detail (an imgstore.v1.ErrorInfo the
 * server sent: IMS_RPC_REASON_STALE_LEASE, _NOT_PRIMARY, _SPLIT_BRAIN, _FENCED... see
 * proto/rpc.h), or "" if it sent none. Borrowed: valid until the next call.
 */
const char *ims_client_last_reason(const ims_client *c);

#endif
