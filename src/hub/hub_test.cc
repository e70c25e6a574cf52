// Unit tests of the hub library's pure parts: references, quantization picking, URLs, ETags,
// the tree listing parser.
#include <gtest/gtest.h>

#include "hub/hf_api.h"
#include "hub/http_client.h"
#include "hub/ref.h"

namespace strata::hub {
namespace {

// `text` parses as an hf:// file reference to repo, file and revision.
void ExpectHfFile(const std::string& text, const std::string& repo, const std::string& file,
                  const std::string& revision) {
  auto r = ParseRef(text);
  ASSERT_TRUE(r.ok()) << text << ": " << r.status().message();
  EXPECT_EQ(r->kind, RefKind::kHfFile) << text;
  EXPECT_EQ(r->repo, repo) << text;
  EXPECT_EQ(r->file, file) << text;
  EXPECT_EQ(r->revision, revision) << text;
}

TEST(Ref, HfFile) {
  ExpectHfFile("hf://bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF/sub/M-Q4_K_M.gguf",
               "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF", "sub/M-Q4_K_M.gguf", "main");
}

TEST(Ref, HfFileRevisionBothForms) {
  ExpectHfFile("hf://o/r/f.gguf@v1.0", "o/r", "f.gguf", "v1.0");
  ExpectHfFile("hf://o/r@abc123/d/f.gguf", "o/r", "d/f.gguf", "abc123");
}

TEST(Ref, QuantAndUrl) {
  auto q = ParseRef("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF:q4_k_m");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->kind, RefKind::kHfQuant);
  EXPECT_EQ(q->quant, "q4_k_m");
  auto bare = ParseRef("o/r");
  ASSERT_TRUE(bare.ok());
  EXPECT_TRUE(bare->quant.empty());
  auto u = ParseRef("https://example.org/m.gguf");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, RefKind::kUrl);
}

TEST(Ref, Rejects) {
  for (const char* bad : {"hf://o", "hf://o/r", "hf://o/r/", "hf://o/../x.gguf", "a/b/c:Q4",
                          "o/r:Q4 K", "justname", "hf://o w/r/f.gguf", "hf://o/r/../f.gguf"})
    EXPECT_FALSE(ParseRef(bad).ok()) << bad;
}

TEST(Ref, LooksLikeRef) {
  EXPECT_TRUE(LooksLikeRef("hf://o/r/f.gguf"));
  EXPECT_TRUE(LooksLikeRef("o/r:Q8_0"));
  EXPECT_TRUE(LooksLikeRef("o/r"));
  EXPECT_TRUE(LooksLikeRef("http://h/x"));
  EXPECT_FALSE(LooksLikeRef("models/x.gguf"));
  EXPECT_FALSE(LooksLikeRef("/abs/x.gguf"));
  EXPECT_FALSE(LooksLikeRef("./a/b"));
  EXPECT_FALSE(LooksLikeRef("model.gguf"));
}

TEST(Quant, NameTags) {
  const std::pair<const char*, const char*> kQuants[] = {
      {"x/DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf", "Q4_K_M"},
      {"model.q8_0.gguf", "Q8_0"},
      {"m-IQ2_XS-00001-of-00003.gguf", "IQ2_XS"},
      {"m-f16.gguf", "F16"},
      {"README.md", ""},
      {"model.gguf", ""}};
  for (const auto& [name, quant] : kQuants) EXPECT_EQ(QuantOfName(name), quant) << name;
  EXPECT_TRUE(IsSplitPart("a/m-Q8_0-00002-of-00003.gguf"));
  EXPECT_FALSE(IsSplitPart("m-Q8_0.gguf"));
}

std::vector<RepoFile> Listing() {
  return {{"README.md", 10, ""},
          {"M-Q4_K_M.gguf", 100, ""},
          {"M-Q4_K_S.gguf", 90, ""},
          {"M-Q8_0.gguf", 200, ""},
          {"M-Q4_K.gguf", 95, ""},
          {"mmproj-M-F16.gguf", 5, ""},
          {"F16/M-F16-00001-of-00002.gguf", 300, ""},
          {"F16/M-F16-00002-of-00002.gguf", 300, ""},
          {"Q6_K/M-Q6_K-00001-of-00002.gguf", 150, ""},
          {"Q6_K/M-Q6_K-00002-of-00002.gguf", 150, ""},
          {"M-Q6_K.gguf", 160, ""}};
}

TEST(Quant, PicksCaseInsensitiveExactTag) {
  auto f = PickQuantFile(Listing(), "q4_k_m", "o/r");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->path, "M-Q4_K_M.gguf");
  auto k = PickQuantFile(Listing(), "Q4_K", "o/r");  // not Q4_K_M / Q4_K_S
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->path, "M-Q4_K.gguf");
  auto d = PickQuantFile(Listing(), "", "o/r");  // default Q4_K_M
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->path, "M-Q4_K_M.gguf");
}

TEST(Quant, PrefersSingleFileOverSplit) {
  auto f = PickQuantFile(Listing(), "Q6_K", "o/r");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->path, "M-Q6_K.gguf");
  auto s = PickQuantFile(Listing(), "f16", "o/r");  // only split (mmproj skipped)
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("split"), std::string::npos);
}

TEST(Quant, MissingListsAvailable) {
  auto f = PickQuantFile(Listing(), "Q2_K", "o/r");
  ASSERT_FALSE(f.ok());
  const std::string m = f.status().message();
  EXPECT_NE(m.find("Q4_K_M"), std::string::npos) << m;
  EXPECT_NE(m.find("Q8_0"), std::string::npos) << m;
  EXPECT_NE(m.find("F16"), std::string::npos) << m;
}

TEST(Quant, AmbiguousAndEmpty) {
  std::vector<RepoFile> two = {{"a-Q8_0.gguf", 1, ""}, {"b-Q8_0.gguf", 1, ""}};
  auto f = PickQuantFile(two, "Q8_0", "o/r");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("ambiguous"), std::string::npos);
  EXPECT_NE(f.status().message().find("b-Q8_0.gguf"), std::string::npos);
  EXPECT_FALSE(PickQuantFile({{"README.md", 1, ""}}, "", "o/r").ok());
  auto only = PickQuantFile({{"x.gguf", 1, ""}}, "", "o/r");
  ASSERT_TRUE(only.ok());
  EXPECT_EQ(only->path, "x.gguf");
}

TEST(Url, ParseAndResolve) {
  auto u = Url::Parse("https://Example.org:8443/a/b/c.gguf?x=1#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "Example.org");
  EXPECT_EQ(u->port, "8443");
  EXPECT_EQ(u->target, "/a/b/c.gguf?x=1");
  EXPECT_EQ(Url::Parse("http://h/x")->port, "80");
  EXPECT_EQ(Url::Parse("https://h")->target, "/");
  EXPECT_EQ(Url::Parse("http://[::1]:9/x")->host, "::1");
  EXPECT_FALSE(Url::Parse("ftp://h/x").ok());
  EXPECT_FALSE(Url::Parse("http://u:p@h/x").ok());
  EXPECT_FALSE(Url::Parse("http://h:x/").ok());
  EXPECT_EQ(u->Resolve("/z")->ToString(), "https://Example.org:8443/z");
  EXPECT_EQ(u->Resolve("d.gguf")->ToString(), "https://Example.org:8443/a/b/d.gguf");
  EXPECT_EQ(u->Resolve("//cdn.test/f")->ToString(), "https://cdn.test/f");
  EXPECT_EQ(u->Resolve("http://cdn:81/f")->ToString(), "http://cdn:81/f");
}

TEST(Etag, Sha256Forms) {
  const std::string h(64, 'a');
  EXPECT_EQ(Sha256FromEtag("\"" + h + "\""), h);
  EXPECT_EQ(Sha256FromEtag("W/\"" + std::string(64, 'B') + "\""), std::string(64, 'b'));
  EXPECT_EQ(Sha256FromEtag("\"abc\""), "");
  EXPECT_EQ(Sha256FromEtag("\"" + std::string(63, 'a') + "g\""), "");
}

TEST(Tree, ParsesListing) {
  const std::string j = R"([
    {"type":"directory","oid":"x","size":0,"path":"F16"},
    {"type":"file","oid":"1","size":12,"path":"README.md"},
    {"type":"file","oid":"2","size":134,"path":"m-Q8_0.gguf",
     "lfs":{"oid":")" + std::string(64, 'c') +
                        R"(","size":1000,"pointerSize":134}}])";
  auto r = ParseTreeListing(j);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].path, "m-Q8_0.gguf");
  EXPECT_EQ((*r)[1].size, 1000u);
  EXPECT_EQ((*r)[1].sha256, std::string(64, 'c'));
  EXPECT_TRUE((*r)[0].sha256.empty());
  EXPECT_FALSE(ParseTreeListing("{}").ok());
  EXPECT_FALSE(ParseTreeListing("not json").ok());
}

TEST(Paths, LocalLayout) {
  auto r = ParseRef("hf://o/r/sub/f.gguf");
  EXPECT_EQ(LocalRelPath(r.value(), "sub/f.gguf"), "o/r/f.gguf");
  auto u = ParseRef("http://127.0.0.1:8080/x/y.gguf?sig=1");
  EXPECT_EQ(LocalRelPath(u.value(), "/x/y.gguf"), "127.0.0.1_8080/y.gguf");
}

}  // namespace
}  // namespace strata::hub
