// The dashboard's static files (src/gateway/dashboard/), embedded into the binary at build
// time by cmake/embed_assets.cmake: served by the gateway at / and /dashboard/<file>.
#pragma once

#include <cstddef>
#include <string_view>

namespace strata::gateway {

struct DashboardAsset {
  const char* path;  // "/" for index.html, else "/dashboard/<file>"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

// The asset served at `path`, or null.
const DashboardAsset* FindDashboardAsset(std::string_view path);

}  // namespace strata::gateway
