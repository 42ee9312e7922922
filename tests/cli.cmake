# The command-line client (cli/): argument parsing, requests, output and operation waits,
# driven through a fake transport with canned responses (tests/unit/cli_fake.c). Pure logic:
# no server, no libimgstore. Included from tests/CMakeLists.txt.

add_library(ims_cli_fake STATIC unit/cli_fake.c)
target_link_libraries(ims_cli_fake PUBLIC ims_cli PkgConfig::CMOCKA)

ims_unit_test(test_cli_args SOURCES unit/test_cli_args.c LIBS ims_cli_fake)
ims_unit_test(test_cli_output SOURCES unit/test_cli_output.c LIBS ims_cli_fake)
ims_unit_test(test_cli_ops SOURCES unit/test_cli_ops.c LIBS ims_cli_fake)
