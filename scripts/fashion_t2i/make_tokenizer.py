#!/usr/bin/env python3
"""Trains the SentencePiece tokenizer of the Fashion-MNIST text-to-image model folder with spm_train on
models/fashion_mnist_t2i/captions_train.txt (run make_captions.py first) and checks it with spm_encode:

  spiece.model / spiece.vocab  a unigram model with T5's special ids (<pad> 0, </s> 1, <unk> 2, no <s>)
  tokenizer_check.json         the eval captions with the ids spm_encode gives them (</s> appended), in the
                               form of a model folder's "tokenizer_check" (the C++ tokenizer must agree)

spm_train reads the training captions and, as a second input, their distinct words: one per line, and all
of them on one line in ascending and in descending order. Without it spm_train keeps hardly any whole word:
its unigram trainer seeds candidate pieces from substrings that are followed by more than one character
somewhere in the corpus, and in template captions most words are always followed by the same text
("photo" by " of a"), so "photo" would be split into "p", "hot", "o". With each word also followed by a
space and by the end of a line, every training word becomes a single piece.

Fails if any training or eval caption tokenizes to <unk>. Prints the vocabulary size and the longest
caption in tokens (with </s>); fails if one is longer than MAX_CAPTION_LENGTH (model.json's
max_caption_length).
Usage: /usr/bin/python3 scripts/fashion_t2i/make_tokenizer.py [--folder models/fashion_mnist_t2i]
"""
import argparse
import json
import os
import subprocess

VOCAB_SIZE = 256  # a target: with --hard_vocab_limit=false the trainer stops at fewer pieces
SEED = 1
MAX_CAPTION_LENGTH = 24  # model.json's max_caption_length: every training and eval caption fits, </s> included


def spm_encode(model, lines):
    """ids (with </s>) of each line, as `spm_encode --output_format=id --extra_options=eos` prints them."""
    out = subprocess.run(["spm_encode", "--model=" + model, "--output_format=id", "--extra_options=eos"],
                         input="".join(line + "\n" for line in lines), capture_output=True, text=True, check=True)
    ids = [[int(i) for i in line.split()] for line in out.stdout.splitlines()]
    assert len(ids) == len(lines)
    return ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="models/fashion_mnist_t2i")
    args = parser.parse_args()
    prefix = os.path.join(args.folder, "spiece")
    with open(os.path.join(args.folder, "captions_train.txt")) as f:
        train = f.read().splitlines()
    words = sorted({w for line in train for w in line.split(" ")})
    # A fixed name (spm_train records its input paths in the model, so a random temporary name would make
    # every run's model differ); removed again afterwards.
    word_file = prefix + "_train_words.txt"
    with open(word_file, "w") as f:
        f.writelines(w + "\n" for w in words)
        f.write(" ".join(words) + "\n" + " ".join(reversed(words)) + "\n")
    subprocess.run(["spm_train", "--input=" + os.path.join(args.folder, "captions_train.txt") + "," + word_file,
                    "--model_prefix=" + prefix, f"--vocab_size={VOCAB_SIZE}", "--hard_vocab_limit=false",
                    "--model_type=unigram", "--character_coverage=1.0", "--pad_id=0", "--eos_id=1", "--unk_id=2",
                    "--bos_id=-1", f"--random_seed={SEED}", "--num_threads=1", "--minloglevel=1"], check=True)
    os.remove(word_file)
    with open(prefix + ".vocab", encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)

    with open(os.path.join(args.folder, "captions_eval.txt")) as f:
        evaluation = [line.split("\t", 1)[1] for line in f.read().splitlines()]
    distinct_train = sorted(set(train))
    train_ids = spm_encode(prefix + ".model", distinct_train)
    eval_ids = spm_encode(prefix + ".model", evaluation)
    for text, ids in list(zip(distinct_train, train_ids)) + list(zip(evaluation, eval_ids)):
        assert 2 not in ids, f"<unk> in {text!r}: {ids}"
        assert ids[-1] == 1 and 1 not in ids[:-1] and 0 not in ids, (text, ids)
    assert max(len(i) for i in train_ids + eval_ids) <= MAX_CAPTION_LENGTH
    longest_train = max(zip(train_ids, distinct_train), key=lambda p: len(p[0]))
    longest_eval = max(zip(eval_ids, evaluation), key=lambda p: len(p[0]))
    # A few training captions as well, to pin down the segmentation of the training templates.
    check_prompts = evaluation + distinct_train[::500]
    check_ids = eval_ids + train_ids[::500]
    with open(os.path.join(args.folder, "tokenizer_check.json"), "w") as f:  # one prompt / id list per line
        f.write('{"max_length": %d,\n "prompts": [\n' % MAX_CAPTION_LENGTH)
        f.write(",\n".join("  " + json.dumps(p) for p in check_prompts) + '],\n "input_ids": [\n')
        f.write(",\n".join("  " + json.dumps(i) for i in check_ids) + "]}\n")
    with open(os.path.join(args.folder, "tokenizer_check.json")) as f:
        assert json.load(f) == {"max_length": MAX_CAPTION_LENGTH, "prompts": check_prompts, "input_ids": check_ids}
    print(f"vocabulary: {vocab_size} pieces; no <unk> in {len(distinct_train)} distinct training and "
          f"{len(evaluation)} eval captions")
    print(f"longest training caption: {len(longest_train[0])} tokens with </s>: {longest_train[1]!r}")
    print(f"longest eval caption: {len(longest_eval[0])} tokens with </s>: {longest_eval[1]!r}")


if __name__ == "__main__":
    main()
