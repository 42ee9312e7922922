# Compiler flags and helpers shared by every folder.

set(IMS_WARNINGS -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
    -Wno-unused-parameter -Wvla)
if(IMS_WERROR)
  list(APPEND IMS_WARNINGS -Werror)
endif()
add_compile_options(${IMS_WARNINGS})
add_compile_definitions(_GNU_SOURCE)

if(IMS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

# Every header is included by its folder: #include "common/error.h".
include_directories(${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})

# ims_unit_test(NAME SOURCES... LIBS ...): a cmocka binary, labelled "unit".
function(ims_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit
    ENVIRONMENT "IMS_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;IMS_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp-${name}")
endfunction()

# ims_integration_test(NAME COMMAND ... [LOCK NAME]): runs with the sandbox's env sourced,
# after the sandbox fixture has brought the clusters up; labelled "integration". Tests that
# share a LOCK never run at the same time (the daemon test kills and restarts imgstored).
function(ims_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT;LOCK" "COMMAND" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_test(NAME ${name}
    COMMAND ${PROJECT_SOURCE_DIR}/tests/with-sandbox ${IMS_SANDBOX_DIR} ${T_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS integration FIXTURES_REQUIRED ceph
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "IMS_TEST_TIMEOUT=${T_TIMEOUT};IMS_SOURCE_DIR=${PROJECT_SOURCE_DIR};IMS_BINARY_DIR=${PROJECT_BINARY_DIR};IMGSTORED_BIN=${PROJECT_BINARY_DIR}/daemon/imgstored")
  if(T_LOCK)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK ${T_LOCK})
  endif()
endfunction()
