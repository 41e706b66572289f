# Runs every libFuzzer target for a bounded time; ctest invokes it as
#   cmake -DSRC=<source dir> -DBIN=<scratch build dir> -DCLANG=<clang> -P run_fuzz.cmake
# It configures a clang build of the project at BIN (BA_FUZZ=ON, no tests),
# builds the `ba_fuzzers` target, then runs each tests/fuzz/fuzz_<name>.c target
# on a scratch copy of tests/fuzz/corpus_<name>/ (the source tree is never
# written). The budget is for all targets together and is split evenly among
# those that run: BA_FUZZ_SECONDS (env, default 60; 0 = only replay the
# corpora) caps the time, BA_FUZZ_RUNS (default 300000) the inputs, run with
# -seed=1 so the suite sees the same inputs every time. BA_FUZZ_TARGET=name
# runs only that target (with the whole budget); BA_FUZZ_EXPLORE=1 drops the
# input cap and the fixed seed (see tests/fuzz/README.md). Any crash, leak,
# sanitizer report or timeout fails the test, and the reproducer is left under
# BIN/fuzz-run/<name>/artifacts/.

foreach(var SRC BIN CLANG)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzz.cmake: pass -D${var}=...")
  endif()
endforeach()

set(total_seconds 60)
if(DEFINED ENV{BA_FUZZ_SECONDS})
  set(total_seconds $ENV{BA_FUZZ_SECONDS})
endif()
if(NOT total_seconds MATCHES "^[0-9]+$")
  message(FATAL_ERROR "BA_FUZZ_SECONDS must be a whole number of seconds, not '${total_seconds}'")
endif()
set(total_runs 300000)
if(DEFINED ENV{BA_FUZZ_RUNS})
  set(total_runs $ENV{BA_FUZZ_RUNS})
endif()
if(NOT total_runs MATCHES "^[0-9]+$")
  message(FATAL_ERROR "BA_FUZZ_RUNS must be a whole number, not '${total_runs}'")
endif()
# A single input running this long is a hang (libFuzzer -timeout, seconds).
set(per_input_timeout 10)
# Inputs may not make the process grow past this (libFuzzer -rss_limit_mb).
set(rss_limit_mb 2048)

execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${BIN} -DCMAKE_C_COMPILER=${CLANG} -DCMAKE_BUILD_TYPE=RelWithDebInfo
          -DBA_FUZZ=ON -DBA_TESTS=OFF -DBA_SANITIZE=OFF -DBA_WERROR=OFF
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "fuzz: configuring the clang build at ${BIN} failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BIN} --target ba_fuzzers -j 2 RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "fuzz: building the fuzz targets failed (${rc}); rerun `cmake --build ${BIN} --target ba_fuzzers`")
endif()

file(GLOB sources ${SRC}/tests/fuzz/fuzz_*.c)
list(SORT sources)
if(DEFINED ENV{BA_FUZZ_TARGET})
  list(FILTER sources INCLUDE REGEX "/fuzz_$ENV{BA_FUZZ_TARGET}\\.c$")
endif()
if(NOT sources)
  message(FATAL_ERROR "fuzz: no tests/fuzz/fuzz_*.c found under ${SRC} (BA_FUZZ_TARGET='$ENV{BA_FUZZ_TARGET}')")
endif()
list(LENGTH sources ntargets)
math(EXPR seconds "${total_seconds} / ${ntargets}")
math(EXPR runs "${total_runs} / ${ntargets}")
if(seconds EQUAL 0 AND NOT total_seconds EQUAL 0)
  set(seconds 1)
endif()
set(failed)
foreach(src ${sources})
  get_filename_component(target ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" name ${target})
  set(work ${BIN}/fuzz-run/${name})
  file(REMOVE_RECURSE ${work})
  file(MAKE_DIRECTORY ${work}/corpus ${work}/artifacts)
  file(GLOB seeds ${SRC}/tests/fuzz/corpus_${name}/*)
  if(seeds)
    file(COPY ${seeds} DESTINATION ${work}/corpus)
  else()
    message(STATUS "fuzz ${name}: no seed corpus at tests/fuzz/corpus_${name}/, starting empty")
  endif()
  if(seconds EQUAL 0)
    set(budget -runs=0)
  elseif(DEFINED ENV{BA_FUZZ_EXPLORE})
    set(budget -max_total_time=${seconds})
  else()
    # The suite's run is reproducible: a fixed seed and a fixed number of
    # inputs (time only caps it), so CI sees the same inputs every time.
    # BA_FUZZ_EXPLORE=1 switches to a random seed for exploratory runs.
    set(budget -seed=1 -runs=${runs} -max_total_time=${seconds})
  endif()
  execute_process(
    COMMAND ${BIN}/tests/fuzz/${target} ${budget} -timeout=${per_input_timeout} -rss_limit_mb=${rss_limit_mb}
            -print_final_stats=1 -artifact_prefix=${work}/artifacts/ ${work}/corpus
    RESULT_VARIABLE rc OUTPUT_FILE ${work}/fuzz.log ERROR_FILE ${work}/fuzz.log)
  file(STRINGS ${work}/fuzz.log stats REGEX "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)")
  string(REPLACE ";" "\n  " stats "${stats}")
  if(rc)
    file(STRINGS ${work}/fuzz.log lines)
    list(LENGTH lines n)
    math(EXPR from "${n} - 60")
    if(from LESS 0)
      set(from 0)
    endif()
    list(SUBLIST lines ${from} 60 tail)
    string(REPLACE ";" "\n" tail "${tail}")
    message("fuzz ${name}: FAILED (exit ${rc}); log ${work}/fuzz.log, reproducer under ${work}/artifacts/\n${tail}")
    list(APPEND failed ${name})
  else()
    message(STATUS "fuzz ${name}: ok (budget ${seconds} s, ${runs} inputs)\n  ${stats}")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "fuzz: findings in: ${failed}")
endif()
