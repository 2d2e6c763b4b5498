# cmake -DOBJDUMP=objdump -DELF=guest.elf -P check_moffs.cmake
# Fails when the guest's code has a `mov` with an absolute memory offset
# (opcodes A0-A3, with or without prefixes): KVM's instruction emulator has
# failed on them (tests/guest/guest.h).
if(NOT OBJDUMP OR NOT EXISTS "${OBJDUMP}")
  message(STATUS "check_moffs: no objdump, not checked")
  return()
endif()
execute_process(COMMAND ${OBJDUMP} -d ${ELF} OUTPUT_VARIABLE dis RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_moffs: ${OBJDUMP} -d ${ELF} failed")
endif()
string(REGEX MATCHALL "\n *[0-9a-f]+:\t((26|2e|36|3e|64|65|66|67|f0|f2|f3) )*a[0-3] [^\n]*" bad "${dis}")
if(bad)
  message(FATAL_ERROR "check_moffs: ${ELF} has absolute-offset mov instructions:${bad}")
endif()
