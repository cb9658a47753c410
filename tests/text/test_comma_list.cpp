#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "text/comma_list.hpp"

using rfaas::text::join_commas;
using rfaas::text::split_commas;

TEST_CASE("comma lists: empty items dropped, joins of numbers and strings", "[text]") {
  CHECK(split_commas("").empty());
  CHECK(split_commas(",,,").empty());
  CHECK(split_commas("a") == std::vector<std::string>{"a"});
  CHECK(split_commas("a,b,,c,") == std::vector<std::string>{"a", "b", "c"});
  CHECK(split_commas(",cpuset,memory") == std::vector<std::string>{"cpuset", "memory"});
  CHECK(join_commas(std::vector<int>{}) == "");
  CHECK(join_commas(std::vector<int>{0, 1, 17}) == "0,1,17");
  CHECK(join_commas(std::vector<std::string>{"echo", "saxpy"}) == "echo,saxpy");
  CHECK(split_commas(join_commas(std::vector<std::string>{"x", "y"})) == std::vector<std::string>{"x", "y"});
}
