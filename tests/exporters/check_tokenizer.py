"""The T5 tokenizer: ours (src/text/t5_tokenizer.cpp) against sentencepiece and transformers' T5Tokenizer.

The project reads T5's spiece.model itself (SentencePiece normalisation and unigram segmentation
reimplemented). Here it tokenizes a corpus of a few hundred prompts (casing, punctuation, numbers,
accents, CJK, emoji, full-width and compatibility characters, odd whitespace, runs of repeated
characters, empty and overlong prompts) with two SentencePiece models: one trained here with the
sentencepiece package (T5's special ids and normaliser, some characters left unknown) and the one in
tests/data/t2i/ (trained by spm_train). For every prompt:
- its ids must equal sentencepiece's encode(prompt) + </s> (what transformers' sentencepiece-backed
  T5Tokenizer returns), untruncated;
- input_ids and attention_mask must equal transformers' T5Tokenizer loaded from the model folder and
  called as the diffusers PixArt pipelines call it (padding="max_length", truncation=True,
  add_special_tokens=True), at max_length 120 (PixArt-alpha), 300 (PixArt-Sigma) and 16 (most prompts
  cut).
Where two segmentations score exactly the same (runs such as "!!!" = "!" "!!" or "!!" "!"), the
implementations break the tie differently: ours as sentencepiece up to 0.2.1 (float best-path scores
compared in double; PixArt's captions were tokenized with such versions), sentencepiece >= 0.2.2 as if
compared in float, and transformers 5's T5Tokenizer (a tokenizers Unigram, double) its own way. A difference is
therefore accepted only when both segmentations have the same total score, and never against
sentencepiece <= 0.2.1 (scripts/ci/exporter_check_requirements.txt pins 0.2.1); the counts are printed.
"""
import json
import os
import shutil

from common import SOURCE_DIR, TRAINING_CAPTIONS, Check, run, tokenizer_corpus, train_sentencepiece

MAX_LENGTHS = (120, 300, 16)


def prompts():
    """A few hundred prompts; none contains "<extra_id_N>" (transformers treats those as special tokens)."""
    base = TRAINING_CAPTIONS + [
        "a cat", "", " ", "   leading and trailing spaces   ", "multiple   inner    spaces", "tab\tseparated\twords",
        "new\nline and\r\ncarriage return", "non\u00a0breaking\u00a0space", "zero\u200bwidth\u200bspace",
        "ideographic\u3000space", "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３", "ligatures ﬁ ﬂ and ½ ² ™ ①",
        "combining e\u0301 vs precomposed \u00e9", "Ångström Ωmega µ micro", "emoji 😀🐶🚀 and ❤️ heart",
        "Ελληνικά κείμενο", "русский текст", "العربية", "עברית", "हिन्दी", "한국어 텍스트", "中文提示词：一只猫",
        "ＡＢＣ！？", "quotes “double” ‘single’ «guillemets»", "dashes - – — and ellipsis …", "math: x^2 + y^2 = z^2, 3.14159",
        "prices $5.99, €10, £3, ¥100", "percent 50% off!!!", "email someone@example.com and url https://example.com/a?b=c",
        "hashtags #sunset #nofilter @user", "snake_case and camelCase and kebab-case", "UPPERCASE SHOUTING PROMPT",
        "MiXeD cAsE pRoMpT", "numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 1,000,000 2024-01-31 12:30",
        "(((emphasis))) [[brackets]] {braces} <angle>", "a/b\\c|d", "trailing punctuation...", "?!", "....",
        "'apostrophes' don't won't it's", "a" * 50, "ab " * 40, "\u2028line separator\u2029paragraph",
        "control\x07char", "soft\u00adhyphen", "ß straße STRASSE", "İstanbul ıi", "ﬀ ﬃ ﬄ ǅ ǆ",
        "wow!!!", "what?!?!", "test.........", "(((((masterpiece)))))", "zzzzzzz", "1000000000", "!!!!!!!!!!!!!",
    ]
    out = []
    for i, text in enumerate(base):
        out += [text, text.upper(), text.lower(), text.title(), " " + text + " ", text + ", " + base[(i + 7) % len(base)]]
    words = " ".join(TRAINING_CAPTIONS)
    out += [words, words.upper(), (words + " ") * 3]  # overlong: hundreds of tokens
    out += [f"a photo of {n} cats, {n * 17} dogs and {n / 7:.3f} birds" for n in range(1, 40)]
    return out


def total_score(scores, ids):
    """The unigram score of a segmentation (without </s>), in double."""
    return sum(scores[i] for i in ids if i < len(scores))


def compare(check, what, texts, ours, reference, scores, exact):
    """ours[i] == reference[i] for every prompt, or (unless `exact`) a segmentation of equal total score."""
    ties, wrong = [], []
    for text, a, b in zip(texts, ours, reference):
        if a == b:
            continue
        if not exact and abs(total_score(scores, a) - total_score(scores, b)) <= 1e-4:
            ties.append(text)
        else:
            wrong.append(text)
    detail = f"{len(ties)} differ only in how an exact score tie is broken, e.g. {ties[:2]!r}" if ties else ""
    if wrong:
        detail = f"{len(wrong)} differ, e.g. {wrong[:3]!r}" + ("; " + detail if detail else "")
    check.expect(what, not wrong, detail)


def main():
    check = Check(__doc__.splitlines()[0], ["transformers", "sentencepiece", "google.protobuf", "safetensors", "torch"])
    import sentencepiece
    import torch
    from safetensors.torch import load_file
    from transformers import T5Tokenizer
    work = check.work_dir("tokenizer")
    texts = prompts()
    prompts_file = os.path.join(work, "prompts.json")
    with open(prompts_file, "w") as f:
        json.dump(texts, f)
    print(f"     {len(texts)} prompts")

    models = {"trained here": os.path.join(work, "trained", "spiece.model"),
              "tests/data/t2i/tiny_spm.model": os.path.join(work, "committed", "spiece.model")}
    os.makedirs(os.path.dirname(models["trained here"]))
    # Trained on the captions and every other prompt: most characters known, the rest <unk>.
    train_sentencepiece(models["trained here"], tokenizer_corpus() + texts[::2])
    os.makedirs(os.path.dirname(models["tests/data/t2i/tiny_spm.model"]))
    shutil.copyfile(os.path.join(SOURCE_DIR, "tests", "data", "t2i", "tiny_spm.model"), models["tests/data/t2i/tiny_spm.model"])

    from packaging.version import Version
    # sentencepiece <= 0.2.1 breaks score ties as ours does: then every id must be equal.
    exact_sentencepiece = Version(sentencepiece.__version__) < Version("0.2.2")
    for name, spiece in models.items():
        sp = sentencepiece.SentencePieceProcessor(model_file=spiece)
        scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
        hf = T5Tokenizer.from_pretrained(os.path.dirname(spiece))  # converts spiece.model, as for the hub's PixArt folders
        unknown = sum(1 for t in texts if sp.unk_id() in sp.encode(t))
        print(f"     {name}: {sp.get_piece_size()} pieces; {unknown} prompts contain <unk>")
        for max_length in MAX_LENGTHS:
            out = os.path.join(work, f"ours_{len(name)}_{max_length}.safetensors")
            run([check.tool("ilf_export_probe"), "tokenize", "--spiece", spiece, "--max-length", max_length,
                 "--prompts", prompts_file, "--out", out], "ilf_export_probe tokenize")
            ours = load_file(out)
            if max_length == MAX_LENGTHS[0]:  # untruncated ids (the same at every max_length)
                flat, lengths = ours["encoded"].tolist(), ours["encoded_lengths"].tolist()
                offsets = [sum(lengths[:i]) for i in range(len(lengths))]
                ours_full = [flat[o:o + n] for o, n in zip(offsets, lengths)]
                compare(check, f"{name}: ids equal sentencepiece {sentencepiece.__version__}'s encode + </s> "
                        f"({len(texts)} prompts)", texts, ours_full, [sp.encode(t) + [sp.eos_id()] for t in texts],
                        scores, exact_sentencepiece)
            reference = hf(texts, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                           return_tensors="pt")
            mask_equal = torch.equal(ours["attention_mask"], reference.attention_mask)
            cut = sum(1 for t in texts if len(sp.encode(t)) + 1 > max_length)
            compare(check, f"{name}, max_length {max_length}: input_ids equal transformers' T5Tokenizer "
                    f"({cut} prompts truncated)", texts, ours["input_ids"].tolist(), reference.input_ids.tolist(),
                    scores, False)
            check.expect(f"{name}, max_length {max_length}: attention_mask equals transformers' T5Tokenizer", mask_equal)
    check.finish()


if __name__ == "__main__":
    main()
