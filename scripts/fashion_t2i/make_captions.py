#!/usr/bin/env python3
"""Writes the captions of the Fashion-MNIST text-to-image model folder (models/fashion_mnist_t2i/):

  captions_train.txt  one caption per line for each of the 60000 training images, in the order of
                      train-images-idx3-ubyte.gz (line i describes image i): a training template filled
                      with a synonym of the image's class and, sometimes, a class-agnostic adjective
  captions_eval.txt   "class_index<TAB>caption" lines made from held-out templates that never occur in
                      training (the synonyms are the training ones), EVAL_PER_CLASS per class
  classes.json        the class names, their synonyms, the adjectives and both template sets

Captions are lower-case ASCII (the C++ text pipeline lower-cases ASCII letters before tokenizing).
Deterministic: numpy's RandomState (a frozen stream) with a fixed seed.
Usage: /usr/bin/python3 scripts/fashion_t2i/make_captions.py [--out models/fashion_mnist_t2i]
"""
import argparse
import gzip
import json
import os

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
SEED = 20240601
EVAL_PER_CLASS = 15
ADJECTIVE_PROBABILITY = 0.3

# (official class name, synonyms). A synonym is "noun" (a singular countable noun: "a sneaker", "an ankle
# boot") or "pair:noun" (a plural noun used as "a pair of trainers").
CLASSES = [
    ("T-shirt/top", ["t-shirt", "tee", "top", "tee shirt", "short sleeve top"]),
    ("Trouser", ["pair:trousers", "pair:pants", "pair:slacks", "pair:jeans"]),
    ("Pullover", ["pullover", "sweater", "jumper", "sweatshirt"]),
    ("Dress", ["dress", "frock", "sundress", "sleeveless dress"]),
    ("Coat", ["coat", "jacket", "overcoat", "parka"]),
    ("Sandal", ["sandal", "pair:sandals", "strappy sandal", "heeled sandal"]),
    ("Shirt", ["shirt", "blouse", "button-up shirt", "long sleeve shirt"]),
    ("Sneaker", ["sneaker", "pair:sneakers", "pair:trainers", "running shoe"]),
    ("Bag", ["bag", "handbag", "purse", "tote bag"]),
    ("Ankle boot", ["ankle boot", "pair:ankle boots", "boot", "bootie"]),
]

# Class-agnostic adjectives (Fashion-MNIST is grayscale, so colours only say "some shade of grey").
ADJECTIVES = ["grey", "gray", "dark", "light grey", "black", "white", "plain", "simple", "small", "classic",
              "casual", "new"]

# {np} is the noun phrase with its article: "a sneaker", "an old coat", "a pair of grey trainers".
TRAIN_TEMPLATES = [
    "{np}",
    "a photo of {np}",
    "a picture of {np}",
    "an image of {np}",
    "{np}, product shot",
    "product photo of {np}",
    "{np} on a black background",
    "{np} on black",
    "a grayscale photo of {np}",
    "a black and white photo of {np}",
    "a small photo of {np}",
    "a centered photo of {np}",
    "a studio photo of {np}",
    "{np} isolated on a dark background",
    "a thumbnail of {np}",
    "a catalog photo of {np}",
    "this is {np}",
    "the picture shows {np}",
    "fashion item: {np}",
    "a low resolution image of {np}",
    "{np}, front view",
    "a product image showing {np}",
    "a 28x28 pixel image of {np}",
]

# Held out: none of these occurs in training (checked below).
EVAL_TEMPLATES = [
    "a close-up photo of {np}",
    "a cropped photo of {np}",
    "{np} for sale",
    "an online shop picture of {np}",
    "a tiny picture of {np}",
    "{np} photographed from the front",
    "here is {np}",
    "a pixelated image of {np}",
    "a clean product image of {np}",
    "{np} against a dark backdrop",
    "a snapshot of {np}",
    "an example of {np}",
]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(synonym, adjective=""):
    """'sneaker' -> 'a sneaker'; 'pair:trainers' + 'grey' -> 'a pair of grey trainers'."""
    if synonym.startswith("pair:"):
        return "a pair of " + (adjective + " " if adjective else "") + synonym[len("pair:"):]
    words = (adjective + " " if adjective else "") + synonym
    return article(words) + " " + words


def caption(template, synonym, adjective=""):
    return template.format(np=noun_phrase(synonym, adjective))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/fashion_mnist_t2i")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    labels = read_idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    assert labels.shape == (60000,)

    rng = np.random.RandomState(SEED)
    train = []
    for label in labels:
        synonyms = CLASSES[label][1]
        template = TRAIN_TEMPLATES[rng.randint(len(TRAIN_TEMPLATES))]
        synonym = synonyms[rng.randint(len(synonyms))]
        adjective = ADJECTIVES[rng.randint(len(ADJECTIVES))] if rng.random_sample() < ADJECTIVE_PROBABILITY else ""
        train.append(caption(template, synonym, adjective))

    # Held-out captions: for each class, EVAL_PER_CLASS distinct (template, synonym) pairs, no adjective.
    evaluation = []
    for index, (_, synonyms) in enumerate(CLASSES):
        pairs = [(t, s) for t in EVAL_TEMPLATES for s in synonyms]
        for k in sorted(rng.choice(len(pairs), EVAL_PER_CLASS, replace=False)):
            evaluation.append((index, caption(*pairs[k])))

    # Checks: lower-case ASCII, no template overlap, no eval caption seen in training, eval characters covered.
    for text in train + [c for _, c in evaluation]:
        assert text == text.lower() and text.isascii() and "\t" not in text and text.strip() == text, text
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)
    train_set = set(train)
    assert not train_set & {c for _, c in evaluation}
    train_chars = set("".join(train))
    missing = set("".join(c for _, c in evaluation)) - train_chars
    assert not missing, f"eval captions use characters never seen in training: {sorted(missing)}"

    with open(os.path.join(args.out, "captions_train.txt"), "w", newline="\n") as f:
        f.writelines(c + "\n" for c in train)
    with open(os.path.join(args.out, "captions_eval.txt"), "w", newline="\n") as f:
        f.writelines(f"{i}\t{c}\n" for i, c in evaluation)
    classes = {
        "dataset": "fashion-mnist",
        "seed": SEED,
        "adjective_probability": ADJECTIVE_PROBABILITY,
        "classes": [{"index": i, "name": name, "synonyms": [noun_phrase(s) for s in synonyms]}
                    for i, (name, synonyms) in enumerate(CLASSES)],
        "adjectives": ADJECTIVES,
        "train_templates": TRAIN_TEMPLATES,
        "eval_templates": EVAL_TEMPLATES,
    }
    with open(os.path.join(args.out, "classes.json"), "w") as f:
        json.dump(classes, f, indent=1)
        f.write("\n")
    longest = max(train + [c for _, c in evaluation], key=len)
    print(f"wrote {len(train)} training captions ({len(train_set)} distinct), {len(evaluation)} eval captions "
          f"to {args.out}; longest: {longest!r}")


if __name__ == "__main__":
    main()
