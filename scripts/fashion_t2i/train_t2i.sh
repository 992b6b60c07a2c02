#!/bin/sh
# Trains the backbone and the feedback module of models/fashion_mnist_t2i/ with ilf_train, after
# make_all.sh made the captions, tokenizer, text encoder and VAE. On the project's 2-core CPU machine:
# shards ~2 min, pretraining 5000 steps ~80 min, ILF 3000 steps ~60 min (one thread each).
# Run from the repository root after building (bash scripts/setup.sh).
set -e
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUNS=runs/fashion_mnist_t2i
M=models/fashion_mnist_t2i
# 1. The 60000 training images with their captions, encoded by the VAE and the text encoder.
/usr/bin/python3 scripts/fashion_t2i/export_images.py --out $RUNS/images
./build/ilf_prepare_data --images $RUNS/images --out $RUNS/shards --captions --channels 1 --resolution 32 \
  --vae-encoder $M/vae_encoder.pt --latent-scale "$(/usr/bin/python3 -c "import json; print(json.load(open('$M/vae_report.json'))['latent_scale'])")" \
  --text-encoder $M/text_encoder.pt --tokenizer $M/spiece.model --max-tokens 24 --dtype f32
# 2. The PixArt-alpha backbone from scratch (configs/fashion_mnist_t2i.json, training.mode pretrain).
./build/ilf_train --config configs/fashion_mnist_t2i.json --out $RUNS/pretrain --resume
cp $RUNS/pretrain/backbone.safetensors $M/backbone.safetensors
# 3. The feedback module: Fast Approximate Distillation on the frozen backbone, loop 4..7.
./build/ilf_train --config configs/fashion_mnist_t2i.json --out $RUNS/ilf --resume --set training.mode=ilf \
  --set weights=$M/backbone.safetensors --set training.steps=3000 --set training.ema_decay=0.99 \
  --set training.warmup_steps=50
cp $RUNS/ilf/feedback.safetensors $M/feedback.safetensors
/usr/bin/python3 scripts/fashion_t2i/write_model_json.py
