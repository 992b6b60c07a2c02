# The library's parsers: the files that read what a user hands the tools (JSON configs, safetensors,
# checkpoints, idx data, the SentencePiece model, model.json). The sanitizer build (tests/fuzz) compiles
# them instrumented and takes everything else from the ordinary build's libilf.a, so libilf.a must hold
# each of them as an object of its own: the main build leaves them out of its unity batches.
set(ILF_PARSER_SOURCES
  src/io/atomic_file.cpp src/io/config.cpp src/io/json.cpp src/io/safetensors.cpp src/config/run_config.cpp
  src/training/checkpoint.cpp src/training/datasets.cpp src/text/t5_tokenizer.cpp src/pipelines/model_folder.cpp)
