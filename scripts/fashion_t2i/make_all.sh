#!/bin/sh
# Remakes every file of models/fashion_mnist_t2i/ (15-25 minutes on one CPU thread, nearly all of it the VAE).
# Run from the repository root with Debian's python3-torch and the sentencepiece command-line tools.
set -e
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
PY=/usr/bin/python3
$PY scripts/fashion_t2i/make_captions.py
$PY scripts/fashion_t2i/make_tokenizer.py
$PY scripts/fashion_t2i/make_text_encoder.py
$PY scripts/fashion_t2i/train_vae.py
$PY scripts/fashion_t2i/write_model_json.py
