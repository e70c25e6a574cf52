#include "cluster/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <tuple>

namespace strata::cluster {
namespace {

constexpr const char* kFull = R"(model:
  path: /models/r1-1.5b.gguf
  name: r1
cluster:
  secret: s3cret-s3cret-s3cret-s3cret-s3cret
nodes:
  - name: a
    host: 10.0.0.1
    port: 8081
    memory: 8GiB
    parallel: 8
  - name: head
    port: 8082
    stage_port: 9082
    layers: 0-13
    next: tail
    speed: 2.5
  - name: tail
    port: 8083
    stage_port: 9083
    layers: "14-27"
gateway:
  listen: 127.0.0.1:9000
  threads: 4
  routing:
    policy: affinity
    affinity_header: X-Chat
    affinity_prefix_chars: 64
  health: {interval_ms: 500, timeout_ms: 200, unhealthy_threshold: 3, healthy_threshold: 2}
  circuit_breaker: {failure_threshold: 2, open_ms: 1000}
  retry: {max_attempts: 4, backoff_ms: 10}
  admission: {max_concurrent: 100, max_queue: 10, queue_timeout_ms: 250, max_body_bytes: 1MiB}
  api_keys:
    - {key: k1, name: alice, requests_per_minute: 60, tokens_per_minute: 1000, max_concurrent: 2}
    - key: k2
  cache: {max_entries: 10, ttl_s: 5}
)";

TEST(ClusterConfig, ParsesEverySection) {
  auto r = ParseClusterConfig(kFull);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ClusterConfig& c = r.value();
  EXPECT_EQ(c.model.path, "/models/r1-1.5b.gguf");
  EXPECT_EQ(c.model.name, "r1");
  EXPECT_EQ(c.cluster.secret, "s3cret-s3cret-s3cret-s3cret-s3cret");
  ASSERT_EQ(c.nodes.size(), 3u);
  EXPECT_EQ(c.nodes[0].host, "10.0.0.1");
  EXPECT_EQ(c.nodes[0].memory, int64_t{8} << 30);
  EXPECT_EQ(c.nodes[0].parallel, 8);
  EXPECT_TRUE(c.nodes[0].layers_auto);
  EXPECT_EQ(c.nodes[0].line, 7);
  EXPECT_FALSE(c.nodes[1].layers_auto);
  EXPECT_EQ(c.nodes[1].layer_begin, 0);
  EXPECT_EQ(c.nodes[1].layer_end, 13);
  EXPECT_EQ(c.nodes[1].next, "tail");
  EXPECT_DOUBLE_EQ(c.nodes[1].speed, 2.5);
  EXPECT_EQ(c.nodes[2].layer_begin, 14);
  EXPECT_EQ(c.nodes[2].stage_port, 9083);
  EXPECT_EQ(c.ModeOf(c.nodes[0]), "replica");
  EXPECT_EQ(c.ModeOf(c.nodes[1]), "pipeline");
  EXPECT_EQ(c.ModeOf(c.nodes[2]), "stage");
  const GatewayConfig& g = c.gateway;
  EXPECT_EQ(g.listen_host, "127.0.0.1");
  EXPECT_EQ(g.listen_port, 9000);
  EXPECT_EQ(g.threads, 4);
  EXPECT_EQ(g.routing.policy, RoutingPolicy::kAffinity);
  EXPECT_EQ(g.routing.affinity_header, "X-Chat");
  EXPECT_EQ(g.routing.affinity_prefix_chars, 64);
  EXPECT_EQ(g.health.interval_ms, 500);
  EXPECT_EQ(g.health.healthy_threshold, 2);
  EXPECT_EQ(g.circuit.failure_threshold, 2);
  EXPECT_EQ(g.retry.max_attempts, 4);
  EXPECT_EQ(g.admission.max_body_bytes, 1 << 20);
  EXPECT_EQ(g.admission.queue_timeout_ms, 250);
  ASSERT_EQ(g.api_keys.size(), 2u);
  EXPECT_EQ(g.api_keys[0].name, "alice");
  EXPECT_EQ(g.api_keys[0].tokens_per_minute, 1000);
  EXPECT_EQ(g.api_keys[0].max_concurrent, 2);
  EXPECT_EQ(g.api_keys[1].requests_per_minute, 0);
  EXPECT_TRUE(g.cache.enabled);
  EXPECT_EQ(g.cache.max_entries, 10);
  EXPECT_EQ(g.cache.ttl_s, 5);
  // Default backends: the replica and the pipeline head, not the later stage.
  EXPECT_EQ(g.backends, (std::vector<std::string>{"a", "head"}));
}

TEST(ClusterConfig, Defaults) {
  auto r = ParseClusterConfig("nodes:\n  - {name: n, port: 1234}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GatewayConfig& g = r->gateway;
  EXPECT_EQ(g.listen_port, 8000);
  EXPECT_EQ(g.routing.policy, RoutingPolicy::kLeastOutstanding);
  EXPECT_EQ(g.health.interval_ms, 2000);
  EXPECT_EQ(g.retry.max_attempts, 3);
  EXPECT_EQ(g.admission.max_body_bytes, 8 << 20);
  EXPECT_FALSE(g.cache.enabled);
  EXPECT_TRUE(g.api_keys.empty());
  EXPECT_TRUE(g.tls_cert.empty());
  EXPECT_EQ(r->nodes[0].host, "127.0.0.1");
  EXPECT_EQ(r->nodes[0].ctx, 4096);
  EXPECT_EQ(g.backends, (std::vector<std::string>{"n"}));
}

// Every error names the file and the line of the offending value.
void ExpectError(const std::string& yaml, const std::string& want) {
  auto r = ParseClusterConfig(yaml, "c.yaml");
  ASSERT_FALSE(r.ok()) << "accepted:\n" << yaml;
  EXPECT_NE(r.status().message().find(want), std::string::npos)
      << "message: " << r.status().message() << "\nwanted: " << want;
}

TEST(ClusterConfig, KvCacheTypes) {
  auto r = ParseClusterConfig(
      "nodes:\n  - {name: n, port: 1, cache_type_k: q8_0, cache_type_v: q4_0}\n"
      "  - {name: m, port: 2}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->nodes[0].cache_type_k, "q8_0");
  EXPECT_EQ(r->nodes[0].cache_type_v, "q4_0");
  EXPECT_EQ(r->nodes[1].cache_type_k, "f16");
  ExpectError("nodes:\n  - {name: n, port: 1, cache_type_v: q5_1}\n",
              "c.yaml:2: nodes[0].cache_type_v: must be f16, q8_0 or q4_0 (got 'q5_1')");
}

TEST(ClusterConfig, SpeculativeDecodingKeys) {
  auto r = ParseClusterConfig(
      "nodes:\n  - {name: n, port: 1, model_draft: d.gguf, spec_type: ngram-simple, draft_max: 8,"
      " draft_min: 2, draft_p_min: 0.5, spec_ngram_size_n: 4, spec_max_seqs: 3,"
      " draft_vocab: 32768}\n"
      "  - {name: m, port: 2}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& a = r->nodes[0];
  EXPECT_EQ(std::tie(a.model_draft, a.spec_type, a.draft_max, a.draft_min, a.spec_ngram_size_n,
                     a.spec_max_seqs, a.draft_vocab),
            std::make_tuple("d.gguf", "ngram-simple", 8, 2, 4, 3, 32768));
  EXPECT_DOUBLE_EQ(a.draft_p_min, 0.5);
  const auto& b = r->nodes[1];  // defaults: no speculation
  EXPECT_EQ(b.model_draft, "");
  EXPECT_EQ(b.spec_type, "none");
  EXPECT_EQ(b.draft_max, 16);
  EXPECT_EQ(b.draft_vocab, 0);
  ExpectError("nodes:\n  - {name: n, port: 1, draft_vocab: -1}\n", "nodes[0].draft_vocab");
  ExpectError("nodes:\n  - {name: n, port: 1, spec_type: eagle}\n",
              "c.yaml:2: nodes[0].spec_type: must be none or ngram-simple (got 'eagle')");
  ExpectError("nodes:\n  - {name: n, port: 1, draft_p_min: 1.5}\n", "nodes[0].draft_p_min");
  ExpectError("nodes:\n  - {name: n, port: 1, draft_max: 1000}\n", "nodes[0].draft_max");
}

TEST(ClusterConfig, ResourcesAndMemoryPressureRouting) {
  auto c = ParseClusterConfig(
      "nodes:\n  - {name: a, port: 1}\ngateway:\n  routing: {avoid_memory_pressure: true}\n"
      "  resources: {warn_cpu_percent: 80, warn_memory_percent: 1.5, warn_disk_percent: 0,"
      " interval_ms: 250, disk_path: /tmp}\n",
      "c.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const GatewayConfig& g = c.value().gateway;
  EXPECT_TRUE(g.routing.avoid_memory_pressure);
  EXPECT_DOUBLE_EQ(g.resources.warn_cpu_percent, 80);
  EXPECT_DOUBLE_EQ(g.resources.warn_memory_percent, 1.5);
  EXPECT_DOUBLE_EQ(g.resources.warn_disk_percent, 0);
  EXPECT_EQ(g.resources.interval_ms, 250);
  EXPECT_EQ(g.resources.disk_path, "/tmp");
  auto d = ParseClusterConfig("nodes:\n  - {name: a, port: 1}\n", "c.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d.value().gateway.routing.avoid_memory_pressure);
  EXPECT_DOUBLE_EQ(d.value().gateway.resources.warn_memory_percent, 90);
  EXPECT_EQ(d.value().gateway.resources.interval_ms, 5000);
  ExpectError(
      "nodes:\n  - {name: a, port: 1}\ngateway:\n  resources:\n    warn_memory_percent: 120\n",
      "c.yaml:5: gateway.resources.warn_memory_percent: must be between 0 and 100");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  resources:\n    warn_ram: 5\n",
              "c.yaml:5: gateway.resources: unknown key 'warn_ram'");
}

TEST(ClusterConfig, ErrorsNameTheLine) {
  ExpectError("nodes:\n  - name: a\n    port: 99999\n",
              "c.yaml:3: nodes[0].port: must be between 1 and 65535");
  ExpectError("nodes:\n  - name: a\n    port: eighty\n",
              "c.yaml:3: nodes[0].port: must be an integer");
  ExpectError("nodes:\n  - name: a\n    port: 1\n    layers: 5-2\n", "c.yaml:4: nodes[0].layers");
  ExpectError("nodes:\n  - name: a\n    port: 1\n    prot: 2\n",
              "c.yaml:4: nodes[0]: unknown key 'prot'");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  routing:\n    policy: random\n",
              "c.yaml:5: gateway.routing.policy: must be round_robin");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  health:\n    intervall_ms: 5\n",
              "c.yaml:5: gateway.health: unknown key 'intervall_ms'");
  ExpectError("nodes:\n  - {name: a, port: 1, next: b}\n",
              "c.yaml:2: nodes[0].next: no node is named 'b'");
  ExpectError("nodes:\n  - {name: a, port: 1}\n  - {name: a, port: 2}\n",
              "c.yaml:3: nodes[1]: duplicate node name");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  listen: nowhere\n",
              "c.yaml:4: gateway.listen");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  tls_cert: x.pem\n",
              "tls_cert and tls_key");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  backends: [zz]\n",
              "c.yaml:4: gateway.backends[0]: no node is named 'zz'");
  ExpectError(
      "nodes:\n  - {name: a, port: 1, next: b}\n  - {name: b, port: 2}\ngateway:\n  backends: "
      "[b]\n",
      "is a later pipeline stage");
  ExpectError("nodes:\n  - {name: a, port: 1, next: b}\n  - {name: b, port: 2, next: a}\n",
              "cycle");
  ExpectError("nodes:\n  - {name: a, port: 1, memory: lots}\n", "c.yaml:2: nodes[0].memory");
  ExpectError(
      "nodes:\n  - {name: a, port: 1}\ngateway:\n  api_keys:\n    - {key: k}\n    - {key: k}\n",
      "c.yaml:6: gateway.api_keys[1]: duplicate key");
  ExpectError("nodes: [\n", "c.yaml:");  // YAML syntax error
  ExpectError("", "empty");
  ExpectError("model: {path: m}\n", "'nodes' is required");
}

TEST(ClusterConfig, RedisClusterKeys) {
  auto r = ParseClusterConfig(
      "nodes: [{name: a, port: 1}]\ngateway:\n  cache: {redis_cluster: true, "
      "redis_nodes: ['10.0.0.5:7000', '[::1]:7001']}\n",
      "c.yaml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->gateway.cache.redis_cluster);
  EXPECT_EQ(r->gateway.cache.redis_nodes,
            (std::vector<std::string>{"10.0.0.5:7000", "[::1]:7001"}));
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  cache:\n    redis_nodes: host\n",
              "c.yaml:5: gateway.cache.redis_nodes: must be a list");
  ExpectError("nodes:\n  - {name: a, port: 1}\ngateway:\n  cache:\n    redis_nodes: [h1]\n",
              "gateway.cache.redis_nodes[0]: must be host:port");
}

TEST(ClusterConfig, ByteSizes) {
  EXPECT_EQ(ParseByteSize("1000"), 1000);
  EXPECT_EQ(ParseByteSize("2KiB"), 2048);
  EXPECT_EQ(ParseByteSize("1.5GB"), 1500000000);
  EXPECT_EQ(ParseByteSize("3 MiB"), 3 << 20);
  EXPECT_FALSE(ParseByteSize("x"));
  EXPECT_FALSE(ParseByteSize("5XB"));
}

TEST(ClusterConfig, LoadMissingFile) {
  auto r = LoadClusterConfig("/nonexistent/cluster.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/cluster.yaml"), std::string::npos);
}

TEST(ClusterConfig, ShortClusterSecretIsRefused) {
  auto r =
      ParseClusterConfig("cluster: {secret: change-me}\nnodes: [{name: a, port: 1}]\n", "c.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("openssl rand -hex 32"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("c.yaml:1"), std::string::npos) << r.status().message();
  EXPECT_TRUE(CheckClusterSecret("", "x").ok());
  EXPECT_TRUE(CheckClusterSecret(std::string(32, 'k'), "x").ok());
  EXPECT_FALSE(CheckClusterSecret(std::string(31, 'k'), "x").ok());
}

// Secrets come from files (relative to the config file) or the environment.
TEST(ClusterConfig, SecretsFromFilesAndEnvironment) {
  const std::string dir = testing::TempDir() + "/strata_cfg_" + std::to_string(::getpid());
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
  };
  write("cluster.key", "  0123456789abcdef0123456789abcdef\n");
  write("node.key", "node-key\n");
  write("redis.pass", "hunter2\n");
  write("c.yaml",
        "cluster: {secret_file: cluster.key}\nnodes: [{name: a, port: 1}]\n"
        "gateway:\n  node_api_key_file: node.key\n  upstream: {max_idle_per_backend: 4, "
        "idle_timeout_ms: 500}\n  cache: {redis_url: 'redis://127.0.0.1:1', "
        "redis_password_file: redis.pass}\n");
  auto r = LoadClusterConfig(dir + "/c.yaml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cluster.secret, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(r->gateway.node_api_key, "node-key");
  EXPECT_EQ(r->gateway.cache.redis_password, "hunter2");
  EXPECT_EQ(r->gateway.upstream.max_idle_per_backend, 4);
  EXPECT_EQ(r->gateway.upstream.idle_timeout_ms, 500);

  // A short secret in a file is refused too; a missing file is an error naming it.
  write("short.key", "abc\n");
  write("s.yaml", "cluster: {secret_file: short.key}\nnodes: [{name: a, port: 1}]\n");
  auto s = LoadClusterConfig(dir + "/s.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("openssl rand"), std::string::npos);
  write("m.yaml", "gateway: {node_api_key_file: nope.key}\nnodes: [{name: a, port: 1}]\n");
  auto m = LoadClusterConfig(dir + "/m.yaml");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("nope.key"), std::string::npos);

  // The environment, when neither value nor file is given.
  write("e.yaml", "nodes: [{name: a, port: 1}]\n");
  ::setenv("STRATA_NODE_API_KEY", "from-env", 1);
  auto e = LoadClusterConfig(dir + "/e.yaml");
  ::unsetenv("STRATA_NODE_API_KEY");
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->gateway.node_api_key, "from-env");
  auto v = ResolveSecret("value", dir + "/node.key", "PATH", "x");
  EXPECT_EQ(v.value(), "value");
}

}  // namespace
}  // namespace strata::cluster

namespace strata::cluster {
namespace {

TEST(ClusterConfig, ReasoningBudget) {
  auto r = ParseClusterConfig(
      "nodes:\n  - {name: a, port: 1, reasoning_budget: 512}\n"
      "  - {name: b, port: 2}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().nodes[0].reasoning_budget, 512);
  EXPECT_EQ(r.value().nodes[1].reasoning_budget, -1);
  EXPECT_FALSE(ParseClusterConfig("nodes:\n  - {name: a, port: 1, reasoning_budget: -2}\n").ok());
}

}  // namespace
}  // namespace strata::cluster
