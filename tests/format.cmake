# The disk image formats (store/format.h): readers of untrusted images and the qcow2 and vmdk writers.
# Pure logic, but the tests build real images with qemu-img and qemu-io (qemu-utils), and
# fail, not skip, without them. Included from tests/CMakeLists.txt.

set(IMS_FORMAT_TEST_UTIL unit/format_test_util.c)
set(IMS_WRITER_TEST_UTIL ${IMS_FORMAT_TEST_UTIL} unit/writer_test_util.c)
ims_unit_test(test_format SOURCES unit/test_format.c ${IMS_FORMAT_TEST_UTIL} LIBS ims_format)
ims_unit_test(test_format_qcow2 SOURCES unit/test_format_qcow2.c ${IMS_FORMAT_TEST_UTIL}
  LIBS ims_format PkgConfig::ZLIB)
ims_unit_test(test_format_vmdk SOURCES unit/test_format_vmdk.c ${IMS_FORMAT_TEST_UTIL}
  LIBS ims_format PkgConfig::ZLIB)
foreach(f vdi vhdx vpc)
  ims_unit_test(test_format_${f} SOURCES unit/test_format_${f}.c ${IMS_FORMAT_TEST_UTIL}
    LIBS ims_format)
endforeach()
# LUKS-encrypted qcow2: the header parser on hostile headers, qemu-img's images decrypted
ims_unit_test(test_format_luks SOURCES unit/test_format_luks.c ${IMS_FORMAT_TEST_UTIL}
  LIBS ims_format)
target_compile_definitions(test_format_luks PRIVATE
  QEMU_LUKS="'${CMAKE_CURRENT_SOURCE_DIR}/lib/qemu-luks'")
ims_unit_test(test_vmdk_writer SOURCES unit/test_vmdk_writer.c ${IMS_WRITER_TEST_UTIL}
  LIBS ims_format)
ims_unit_test(test_qcow2_writer SOURCES unit/test_qcow2_writer.c ${IMS_WRITER_TEST_UTIL}
  LIBS ims_format)
set_tests_properties(test_format test_format_qcow2 test_format_vmdk test_format_vdi
  test_format_vhdx test_format_vpc test_format_luks test_vmdk_writer test_qcow2_writer
  PROPERTIES TIMEOUT 120)
# An export's ring (outbound stream): chunks sent out of order, retried, asked ahead
ims_unit_test(test_export_ring SOURCES unit/test_export_ring.c LIBS ims_format)
set_tests_properties(test_export_ring PROPERTIES TIMEOUT 60)
