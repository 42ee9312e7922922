# The RPC transport (proto/): the code and role tables, the request pipeline without sockets,
# and real servers and clients over loopback TCP (TLS and plain) and a Unix socket, through
# libimgstore and the curl command line. No Ceph: labelled "unit". Needs the openssl and curl
# commands. Included from tests/CMakeLists.txt.
set(IMS_RPC_TOY ${PROJECT_SOURCE_DIR}/tests/unit/rpc_toy.c)

ims_unit_test(test_rpc SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_rpc.c LIBS ims_rpc)

# The client's answer decoding is tested from its source (client_int.h is not exported).
ims_unit_test(test_rpc_pipeline
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_rpc_pipeline.c ${IMS_RPC_TOY}
          ${PROJECT_SOURCE_DIR}/proto/client.c
  LIBS ims_rpc_server PkgConfig::CURL PkgConfig::JSONC)

# Against the installed shape: the shared libimgstore next to a statically linked server.
ims_unit_test(test_transport
  SOURCES ${PROJECT_SOURCE_DIR}/tests/integration/test_transport.c ${IMS_RPC_TOY}
  LIBS ims_rpc_server imgstore PkgConfig::JSONC Threads::Threads)
set_tests_properties(test_transport PROPERTIES TIMEOUT 60)

# The Connect protocol beyond binary POST: the proto3 JSON codec (proto/json.c), hostile JSON,
# application/json calls, GET calls, Connect-Timeout-Ms, typed error details (and the client's
# reading of them), without sockets and over loopback.
ims_unit_test(test_rpc_json
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_rpc_json.c ${IMS_RPC_TOY}
          ${PROJECT_SOURCE_DIR}/proto/client.c
  LIBS ims_rpc_server PkgConfig::CURL PkgConfig::JSONC)

# UploadChunkRequest read in place (proto/upload_chunk.c): against protobuf-c's unpack on
# packed and hostile bytes, and through the pipeline with the data left in the body.
ims_unit_test(test_upload_chunk
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_upload_chunk.c LIBS ims_rpc_server)
