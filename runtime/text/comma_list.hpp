// Comma-separated lists, as options, environment variables and kernel files write them: the one
// split and the one join. Header only; uses nothing of rfaas.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace rfaas::text {

// "a,b,,c" -> {a, b, c}: empty items are dropped.
inline std::vector<std::string> split_commas(std::string_view list) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos <= list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    if (comma > pos) out.emplace_back(list.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// {1, 2, 3} -> "1,2,3"; items are strings or numbers.
template <class Items>
std::string join_commas(const Items& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ',';
    if constexpr (std::is_convertible_v<decltype(item), std::string_view>) out += item;
    else out += std::to_string(item);
  }
  return out;
}

}  // namespace rfaas::text
