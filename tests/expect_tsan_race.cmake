# Runs BINARY (tests/grid_planted_race.cpp under ThreadSanitizer) and passes only if TSan reported
# a data race inside planted_race_kernel: proof that the grid emulator's TSan build can see a
# missing __syncthreads. Usage: cmake -DBINARY=path -P expect_tsan_race.cmake
execute_process(COMMAND ${BINARY} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "WARNING: ThreadSanitizer: data race" race)
string(FIND "${err}" "planted_race_kernel" kernel)
if(race EQUAL -1 OR kernel EQUAL -1)
  message(FATAL_ERROR "ThreadSanitizer did not report the planted race in planted_race_kernel "
                      "(exit ${rc}).\nstdout:\n${out}\nstderr:\n${err}")
endif()
message(STATUS "ThreadSanitizer reported the planted race (exit ${rc}):\n${err}")
