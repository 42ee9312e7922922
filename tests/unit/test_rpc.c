/* Unit tests of proto/rpc.h: the frozen Connect codes, their HTTP statuses, the errno maps,
 * the roles. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto/rpc.h"

static const struct {
	ims_rpc_code code;
	const char *name;
	int status;
	int err;
} table[] = {
	{IMS_RPC_CANCELED, "canceled", 499, -ECANCELED},
	{IMS_RPC_UNKNOWN, "unknown", 500, -EIO},
	{IMS_RPC_INVALID_ARGUMENT, "invalid_argument", 400, -EINVAL},
	{IMS_RPC_DEADLINE_EXCEEDED, "deadline_exceeded", 408, -ETIMEDOUT},
	{IMS_RPC_NOT_FOUND, "not_found", 404, -ENOENT},
	{IMS_RPC_ALREADY_EXISTS, "already_exists", 409, -EEXIST},
	{IMS_RPC_PERMISSION_DENIED, "permission_denied", 403, -EPERM},
	{IMS_RPC_RESOURCE_EXHAUSTED, "resource_exhausted", 429, -ENOSPC},
	{IMS_RPC_FAILED_PRECONDITION, "failed_precondition", 400, -EBUSY},
	{IMS_RPC_ABORTED, "aborted", 409, -EAGAIN},
	{IMS_RPC_OUT_OF_RANGE, "out_of_range", 400, -ERANGE},
	{IMS_RPC_UNIMPLEMENTED, "unimplemented", 501, -ENOSYS},
	{IMS_RPC_INTERNAL, "internal", 500, -EIO},
	{IMS_RPC_UNAVAILABLE, "unavailable", 503, -EAGAIN},
	{IMS_RPC_DATA_LOSS, "data_loss", 500, -EIO},
	{IMS_RPC_UNAUTHENTICATED, "unauthenticated", 401, -EACCES},
};

#define N (sizeof(table) / sizeof(table[0]))

static void test_frozen_values(void **state)
{
	(void)state;
	/* the enum's numbers are the wire's: gRPC's and Connect's */
	assert_int_equal(IMS_RPC_OK, 0);
	assert_int_equal(IMS_RPC_CANCELED, 1);
	assert_int_equal(IMS_RPC_NOT_FOUND, 5);
	assert_int_equal(IMS_RPC_UNIMPLEMENTED, 12);
	assert_int_equal(IMS_RPC_UNAUTHENTICATED, 16);
	assert_int_equal(N, 16);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(table[i].code, (ims_rpc_code)(i + 1));
}

static void test_names_round_trip(void **state)
{
	(void)state;
	for (size_t i = 0; i < N; i++) {
		ims_rpc_code c = IMS_RPC_OK;
		assert_string_equal(ims_rpc_code_name(table[i].code), table[i].name);
		assert_int_equal(ims_rpc_code_parse(&c, table[i].name), 0);
		assert_int_equal(c, table[i].code);
	}
	assert_string_equal(ims_rpc_code_name(IMS_RPC_OK), "ok");
	assert_string_equal(ims_rpc_code_name((ims_rpc_code)99), "unknown");
}

static void test_parse_refuses(void **state)
{
	ims_rpc_code c = IMS_RPC_NOT_FOUND;
	(void)state;
	assert_int_equal(ims_rpc_code_parse(&c, "ok"), -EINVAL);
	assert_int_equal(ims_rpc_code_parse(&c, "NOT_FOUND"), -EINVAL);
	assert_int_equal(ims_rpc_code_parse(&c, "not_found "), -EINVAL);
	assert_int_equal(ims_rpc_code_parse(&c, ""), -EINVAL);
	assert_int_equal(ims_rpc_code_parse(&c, NULL), -EINVAL);
	assert_int_equal(ims_rpc_code_parse(NULL, "not_found"), -EINVAL);
	assert_int_equal(c, IMS_RPC_NOT_FOUND); /* untouched on error */
}

static void test_http_status(void **state)
{
	(void)state;
	for (size_t i = 0; i < N; i++)
		assert_int_equal(ims_rpc_code_http_status(table[i].code), table[i].status);
	assert_int_equal(ims_rpc_code_http_status(IMS_RPC_OK), 200);
	assert_int_equal(ims_rpc_code_http_status((ims_rpc_code)-1), 500);
}

static void test_errno_from_code(void **state)
{
	(void)state;
	for (size_t i = 0; i < N; i++)
		assert_int_equal(ims_rpc_errno_from_code(table[i].code), table[i].err);
	assert_int_equal(ims_rpc_errno_from_code(IMS_RPC_OK), 0);
	assert_int_equal(ims_rpc_errno_from_code((ims_rpc_code)1000), -EIO);
}

static void test_code_from_errno(void **state)
{
	static const struct {
		int err;
		ims_rpc_code code;
	} m[] = {
		{0, IMS_RPC_OK},
		{-ENOENT, IMS_RPC_NOT_FOUND},
		{-EEXIST, IMS_RPC_ALREADY_EXISTS},
		{-EINVAL, IMS_RPC_INVALID_ARGUMENT},
		{-ENOTSUP, IMS_RPC_INVALID_ARGUMENT},
		{-EOPNOTSUPP, IMS_RPC_INVALID_ARGUMENT},
		{-ENAMETOOLONG, IMS_RPC_INVALID_ARGUMENT},
		{-EACCES, IMS_RPC_PERMISSION_DENIED},
		{-EPERM, IMS_RPC_PERMISSION_DENIED},
		{-EBUSY, IMS_RPC_FAILED_PRECONDITION},
		{-ENOTEMPTY, IMS_RPC_FAILED_PRECONDITION},
		{-ECANCELED, IMS_RPC_CANCELED},
		{-ETIMEDOUT, IMS_RPC_UNAVAILABLE},
		{-ECONNREFUSED, IMS_RPC_UNAVAILABLE},
		{-EHOSTUNREACH, IMS_RPC_UNAVAILABLE},
		{-ESHUTDOWN, IMS_RPC_UNAVAILABLE},
		{-ENOSPC, IMS_RPC_RESOURCE_EXHAUSTED},
		{-EDQUOT, IMS_RPC_RESOURCE_EXHAUSTED},
		{-EFBIG, IMS_RPC_RESOURCE_EXHAUSTED},
		{-EMSGSIZE, IMS_RPC_RESOURCE_EXHAUSTED},
		{-EAGAIN, IMS_RPC_RESOURCE_EXHAUSTED},
		{-ERANGE, IMS_RPC_OUT_OF_RANGE},
		{-ENOSYS, IMS_RPC_UNIMPLEMENTED},
		{-EIO, IMS_RPC_INTERNAL},
		{-ENOMEM, IMS_RPC_INTERNAL},
		{-EPROTO, IMS_RPC_INTERNAL},
		{-9999, IMS_RPC_INTERNAL},
		{ENOENT, IMS_RPC_NOT_FOUND}, /* positive: the same */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		assert_int_equal(ims_rpc_code_from_errno(m[i].err), m[i].code);
}

/* What a client returns maps back to the code it came from, so a proxying daemon keeps it. */
static void test_errno_maps_back(void **state)
{
	(void)state;
	for (size_t i = 0; i < N; i++) {
		ims_rpc_code c = table[i].code;
		ims_rpc_code back = ims_rpc_code_from_errno(ims_rpc_errno_from_code(c));
		switch (c) {
		case IMS_RPC_UNKNOWN: /* EIO */
		case IMS_RPC_DATA_LOSS: assert_int_equal(back, IMS_RPC_INTERNAL); break;
		case IMS_RPC_ABORTED: /* EAGAIN */
		case IMS_RPC_UNAVAILABLE: assert_int_equal(back, IMS_RPC_RESOURCE_EXHAUSTED); break;
		case IMS_RPC_DEADLINE_EXCEEDED: /* ETIMEDOUT */
			assert_int_equal(back, IMS_RPC_UNAVAILABLE);
			break;
		case IMS_RPC_UNAUTHENTICATED: /* EACCES */
			assert_int_equal(back, IMS_RPC_PERMISSION_DENIED);
			break;
		default: assert_int_equal(back, c);
		}
	}
}

static void test_roles(void **state)
{
	ims_role r = IMS_ROLE_NONE;
	(void)state;
	assert_true(IMS_ROLE_NONE < IMS_ROLE_READER);
	assert_true(IMS_ROLE_READER < IMS_ROLE_HOST);
	assert_true(IMS_ROLE_HOST < IMS_ROLE_ADMIN);
	assert_string_equal(ims_role_name(IMS_ROLE_NONE), "none");
	assert_string_equal(ims_role_name(IMS_ROLE_READER), "reader");
	assert_string_equal(ims_role_name(IMS_ROLE_HOST), "host");
	assert_string_equal(ims_role_name(IMS_ROLE_ADMIN), "admin");
	assert_string_equal(ims_role_name((ims_role)7), "none");

	assert_int_equal(ims_role_parse(&r, "reader"), 0);
	assert_int_equal(r, IMS_ROLE_READER);
	assert_int_equal(ims_role_parse(&r, "host"), 0);
	assert_int_equal(r, IMS_ROLE_HOST);
	assert_int_equal(ims_role_parse(&r, "admin"), 0);
	assert_int_equal(r, IMS_ROLE_ADMIN);
	/* "none" is no role a token can have */
	assert_int_equal(ims_role_parse(&r, "none"), -EINVAL);
	assert_int_equal(ims_role_parse(&r, "Admin"), -EINVAL);
	assert_int_equal(ims_role_parse(&r, ""), -EINVAL);
	assert_int_equal(ims_role_parse(&r, NULL), -EINVAL);
	assert_int_equal(r, IMS_ROLE_ADMIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frozen_values),	cmocka_unit_test(test_names_round_trip),
		cmocka_unit_test(test_parse_refuses),	cmocka_unit_test(test_http_status),
		cmocka_unit_test(test_errno_from_code), cmocka_unit_test(test_code_from_errno),
		cmocka_unit_test(test_errno_maps_back), cmocka_unit_test(test_roles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
