# Runs BINARY (tests/grid_planted_race.cpp under ThreadSanitizer) with ARG (optional) and passes
# only if TSan reported a data race inside KERNEL (default planted_race_kernel): proof that the
# grid emulator's TSan build can see a missing __syncthreads, or with ARG=cluster a missing
# cluster.sync(). Usage: cmake -DBINARY=path [-DARG=cluster -DKERNEL=name] -P expect_tsan_race.cmake
if(NOT KERNEL)
  set(KERNEL planted_race_kernel)
endif()
execute_process(COMMAND ${BINARY} ${ARG} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "WARNING: ThreadSanitizer: data race" race)
string(FIND "${err}" "${KERNEL}" kernel)
if(race EQUAL -1 OR kernel EQUAL -1)
  message(FATAL_ERROR "ThreadSanitizer did not report the planted race in ${KERNEL} "
                      "(exit ${rc}).\nstdout:\n${out}\nstderr:\n${err}")
endif()
message(STATUS "ThreadSanitizer reported the planted race (exit ${rc}):\n${err}")
