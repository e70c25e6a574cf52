#include <cstdio>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/log_setup.h"
#include "model/kv_cache.h"
#include "runtime/engine.h"

namespace strata::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

std::pair<CLI::Option*, CLI::Option*> AddKvCacheTypeOptions(CLI::App* sub, std::string* k,
                                                            std::string* v) {
  CLI::Option* ok =
      sub->add_option("--cache-type-k", *k, "KV cache type of the keys: f16, q8_0, q4_0")
          ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}, CLI::ignore_case))
          ->capture_default_str();
  CLI::Option* ov =
      sub->add_option("--cache-type-v", *v, "KV cache type of the values: f16, q8_0, q4_0")
          ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}, CLI::ignore_case))
          ->capture_default_str();
  return {ok, ov};
}

void AddMmapOption(CLI::App* sub, bool* mmap) {
  sub->add_flag("--mmap", *mmap,
                "Keep the weights in the file mapping instead of copying them into huge pages "
                "at load (the copy decodes faster; the mapping lets processes that load the "
                "same file share its pages)");
}

CLI::Option* AddModelOption(CLI::App* sub, std::string* model) {
  return sub
      ->add_option("--model,-m", *model,
                   "GGUF model file or reference (hf://OWNER/REPO/FILE.gguf, OWNER/REPO:QUANT, "
                   "URL; pulled on first use)")
      ->required();
}

Result<std::unique_ptr<Engine>> LoadCliEngine(EngineOptions eo, const std::string& cache_type_k,
                                              const std::string& cache_type_v) {
  eo.cache_type_k = ParseKvType(cache_type_k).value();
  eo.cache_type_v = ParseKvType(cache_type_v).value();
  return Engine::Load(eo);
}

void AddChatTemplateOption(CLI::App* sub, std::string* family, const std::string& help) {
  sub->add_option("--chat-template", *family, help)
      ->check(CLI::IsMember({"deepseek-r1", "qwen2.5", "llama3.1", "llama3", "chatml"}));
}

void AddLogFormatOption(CLI::App* sub, std::string* format) {
  sub->add_option("--log-format", *format,
                  "Log lines as json or text (default: $STRATA_LOG_FORMAT, else json unless "
                  "stderr is a terminal)")
      ->check(CLI::IsMember({"json", "text"}));
}

bool SetUpLogging(const std::string& format, const std::string& component,
                  const std::string& node) {
  LogFormat f;
  if (!format.empty()) {
    if (!ParseLogFormat(format, &f)) {
      Fail("--log-format must be json or text");
      return false;
    }
    SetLogFormat(f);
  }
  SetLogComponent(component);
  SetLogNode(node);
  return true;
}

}  // namespace strata::cli
