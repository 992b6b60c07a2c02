// Fuzz target: the SentencePiece model reader (ilf::T5Tokenizer), a protobuf parser written here, and
// the tokenizer built from what it read: a model it accepts must tokenize any text without reading
// out of bounds (prompts with spaces, punctuation, digits, multi-byte and invalid UTF-8).
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "ilf/text/t5_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ilf::fuzz::write_input("spiece.model", data, size);
  ilf::fuzz::expect_clean([&] {
    const ilf::T5Tokenizer tokenizer(path, 16);
    const std::vector<std::string> prompts = {"",
                                              " ",
                                              "A photo of a Sneaker, 2 dollars!",
                                              "  double  spaces\t\n",
                                              "\xc3\xa9t\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x91\x9f",
                                              "\xff\xfe broken \xc3"};
    for (const auto& p : prompts) tokenizer.encode(p);
    tokenizer.tokenize(prompts);
  });
  return 0;
}
