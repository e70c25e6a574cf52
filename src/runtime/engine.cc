#include "runtime/engine.h"

#include <algorithm>

#include "base/timer.h"

namespace strata {

Engine::Engine(std::unique_ptr<Model> model, std::unique_ptr<Tokenizer> tok, KvCache cache,
               int threads, int n_batch)
    : model_(std::move(model)),
      tokenizer_(std::move(tok)),
      cache_(std::move(cache)),
      pool_(std::make_unique<ThreadPool>(threads)),
      n_batch_(n_batch) {
  forward_ = std::make_unique<Forward>(*model_, &cache_, pool_.get());
}

Result<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& o) {
  if (o.n_ctx < 1) return Errorf("context size must be positive (got %d)", o.n_ctx);
  if (o.n_batch < 1) return Errorf("batch size must be positive (got %d)", o.n_batch);
  STRATA_ASSIGN_OR_RETURN(auto model,
                          Model::Load(o.model_path, {.mmap = o.mmap, .progress = o.load_progress}));
  auto tok = Tokenizer::FromGguf(model->file());
  if (!tok.ok()) return tok.status().With("loading the tokenizer of '" + o.model_path + "'");
  if (tok.value()->n_vocab() != model->config().n_vocab)
    return Errorf("tokenizer has %d tokens but the model's vocabulary is %lld",
                  tok.value()->n_vocab(), static_cast<long long>(model->config().n_vocab));
  const ModelConfig& c = model->config();
  STRATA_RETURN_IF_ERROR(KvCache::CheckTypes(o.cache_type_k, o.cache_type_v, c.head_dim));
  STRATA_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(c.n_layers, o.n_seq, o.n_ctx, c.kv_dim(),
                                                         o.cache_type_k, o.cache_type_v));
  return std::unique_ptr<Engine>(
      new Engine(std::move(model), std::move(tok).value(), std::move(cache), o.threads, o.n_batch));
}

std::vector<int32_t> Engine::Tokenize(const std::string& text, bool add_special,
                                      bool parse_special) const {
  return tokenizer_->Encode(text, add_special, parse_special);
}

Status Engine::Eval(const std::vector<int32_t>& tokens, int seq, std::vector<float>* last_logits) {
  return EvalOutputs(tokens, seq, static_cast<int>(tokens.size()) - 1, last_logits);
}

Status Engine::EvalOutputs(const std::vector<int32_t>& tokens, int seq, int first_output,
                           std::vector<float>* logits) {
  if (seq < 0 || seq >= cache_.n_seq()) return Errorf("sequence slot %d does not exist", seq);
  const int start = cache_.length(seq);
  const int n = static_cast<int>(tokens.size());
  if (start + n > cache_.n_ctx())
    return Errorf("%d tokens do not fit the context: %d positions used of %d", n, start,
                  cache_.n_ctx());
  if (n > 0 && (first_output < 0 || first_output >= n))
    return Errorf("first output %d is outside the %d tokens", first_output, n);
  if (logits) logits->clear();
  for (int i = 0; i < n; i += n_batch_) {
    const int m = std::min(n_batch_, n - i);
    batch_.Clear();
    for (int j = 0; j < m; ++j)
      batch_.Add(tokens[static_cast<size_t>(i) + j], start + i + j, seq, i + j >= first_output);
    STRATA_RETURN_IF_ERROR(forward_->Run(batch_, nullptr, &out_));
    // out_: [outputs of this batch, n_vocab]
    if (logits && i + m > first_output) logits->insert(logits->end(), out_.begin(), out_.end());
  }
  return Status::Ok();
}

Result<GenerateResult> Engine::Generate(
    const std::vector<int32_t>& prompt, const GenerateOptions& opts,
    const std::function<bool(int32_t, const std::string&)>& on_token) {
  GenerateResult r;
  r.prompt_tokens = prompt;
  if (prompt.empty()) return Status::Error("the prompt is empty");
  if (static_cast<int>(prompt.size()) >= cache_.n_ctx())
    return Errorf("the prompt has %zu tokens but the context holds %d (raise --ctx)", prompt.size(),
                  cache_.n_ctx());
  if (opts.seq < 0 || opts.seq >= cache_.n_seq())
    return Errorf("sequence slot %d does not exist", opts.seq);
  cache_.Clear(opts.seq);

  Sampler sampler(opts.sampler);
  for (int32_t t : prompt) sampler.Accept(t);
  StreamDecoder decoder(*tokenizer_);
  std::vector<float> logits;

  Timer timer;
  STRATA_RETURN_IF_ERROR(Eval(prompt, opts.seq, &logits));
  r.prompt_ms = timer.ElapsedMs();
  timer.Reset();

  const int32_t n_vocab = static_cast<int32_t>(model_->config().n_vocab);
  r.stop_reason = "length";
  for (int i = 0; i < opts.max_tokens; ++i) {
    const int32_t id = sampler.Sample(logits.data(), n_vocab);
    sampler.Accept(id);
    r.tokens.push_back(id);
    if (tokenizer_->IsEog(id)) {
      r.stop_reason = "eog";
      break;
    }
    const std::string piece = decoder.Push(id);
    r.text += piece;
    if (on_token && !on_token(id, piece)) {
      r.stop_reason = "cancelled";
      break;
    }
    if (i + 1 == opts.max_tokens) break;
    if (cache_.length(opts.seq) >= cache_.n_ctx()) {
      r.stop_reason = "context";
      break;
    }
    STRATA_RETURN_IF_ERROR(Eval({id}, opts.seq, &logits));
  }
  const std::string tail = decoder.Flush();
  r.text += tail;
  if (on_token && !tail.empty()) on_token(-1, tail);
  r.gen_ms = timer.ElapsedMs();
  return r;
}

}  // namespace strata
