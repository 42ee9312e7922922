# The command-line client (cli/): argument parsing, requests, output and operation waits,
# driven through a fake transport with canned responses (tests/unit/cli_fake.c). Pure logic:
# no server, no libimgstore. Included from tests/CMakeLists.txt.

add_library(ims_cli_fake STATIC unit/cli_fake.c)
target_link_libraries(ims_cli_fake PUBLIC ims_cli PkgConfig::CMOCKA)

ims_unit_test(test_cli_args SOURCES unit/test_cli_args.c LIBS ims_cli_fake)
ims_unit_test(test_cli_output SOURCES unit/test_cli_output.c LIBS ims_cli_fake)
ims_unit_test(test_cli_ops SOURCES unit/test_cli_ops.c LIBS ims_cli_fake)
# The examples of every verb's --help: each names a verb, shows in its --help and passes the
# command line's checks (test_cli_help_examples.sh, integration, runs them against a site).
ims_unit_test(test_cli_examples SOURCES unit/test_cli_examples.c LIBS ims_cli)

# The manual pages and the bash completion the build writes (man/): no groff or man warning,
# imgstored(8) has the options of imgstored --help, imgstore(1) every verb and example, the
# completion offers every verb and option.
if(NOT IMS_FUZZ)
  add_test(NAME man_pages COMMAND ${PROJECT_SOURCE_DIR}/tests/unit/test_man_pages.sh)
  set_tests_properties(man_pages PROPERTIES LABELS unit
    ENVIRONMENT "IMS_SOURCE_DIR=${PROJECT_SOURCE_DIR};IMS_BINARY_DIR=${PROJECT_BINARY_DIR};IMGSTORED_BIN=$<TARGET_FILE:imgstored>")
  add_test(NAME bash_completion COMMAND ${PROJECT_SOURCE_DIR}/tests/unit/test_bash_completion.sh)
  set_tests_properties(bash_completion PROPERTIES LABELS unit ENVIRONMENT "IMS_BINARY_DIR=${PROJECT_BINARY_DIR}")
endif()
