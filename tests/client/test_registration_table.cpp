#include <catch2/catch.hpp>
#include <cstdint>

#include "client/registration_table.hpp"

using rfaas::client::RegistrationTable;
using Lookup = RegistrationTable::Lookup;

TEST_CASE("registration table: covered, new and growing ranges") {
  static uint8_t mem[4096];
  RegistrationTable c;
  CHECK(c.classify(mem, 10) == Lookup::new_range);
  CHECK(c.covers(mem, 0));  // nothing to send is always fine
  c.insert(mem + 100, 1000, nullptr);
  CHECK(c.classify(mem + 100, 1000) == Lookup::covered);
  CHECK(c.classify(mem + 500, 600) == Lookup::covered);
  CHECK(c.classify(mem + 500, 601) == Lookup::new_range);   // runs past the end
  CHECK(c.classify(mem + 100, 1001) == Lookup::grows_existing);
  CHECK(c.classify(mem + 50, 10) == Lookup::new_range);     // before it
  CHECK(c.classify(mem + 1100, 1) == Lookup::new_range);    // just after it

  c.insert(mem + 100, 2000, nullptr);  // replaces, does not add
  CHECK(c.size() == 1);
  CHECK(c.covers(mem + 2000, 100));

  c.insert(mem + 3000, 100, nullptr);
  c.insert(mem + 10, 20, nullptr);
  REQUIRE(c.size() == 3);
  CHECK(c.ranges()[0].begin == mem + 10);  // kept sorted
  CHECK(c.ranges()[2].begin == mem + 3000);
  CHECK(c.covers(mem + 3050, 50));
  CHECK_FALSE(c.covers(mem + 3050, 51));

  CHECK(c.erase(mem + 100));
  CHECK_FALSE(c.erase(mem + 100));
  CHECK_FALSE(c.erase(mem + 11));  // only by start address
  CHECK(c.classify(mem + 500, 1) == Lookup::new_range);
  c.clear();
  CHECK(c.size() == 0);
}

TEST_CASE("registration table follows the client's rule for overlapping ranges") {
  // Only the last registration starting at or before an address is looked at: one search on the
  // invocation path, and the MPI layer's zero-copy count says what the client does.
  static uint8_t mem[4096];
  RegistrationTable c;
  c.insert(mem, 4000, nullptr);
  c.insert(mem + 100, 10, nullptr);
  CHECK(c.classify(mem + 105, 5) == Lookup::covered);
  CHECK(c.find(mem + 105, 5)->begin == mem + 100);
  CHECK(c.classify(mem + 200, 10) == Lookup::new_range);
}

TEST_CASE("registration table: lookups name the region, and a region's ranges go with it") {
  static uint8_t mem[4096];
  RegistrationTable c;
  const auto* a = reinterpret_cast<const rfaas::fabric::MemoryRegion*>(&mem[1]);  // identities only
  const auto* b = reinterpret_cast<const rfaas::fabric::MemoryRegion*>(&mem[2]);
  c.insert(mem, 100, a);
  c.insert(mem + 200, 100, b);
  REQUIRE(c.find(mem + 10, 10));
  CHECK(c.find(mem + 10, 10)->region == a);
  CHECK(c.find(mem + 250, 50)->region == b);
  CHECK(c.find(mem + 250, 51) == nullptr);
  CHECK(c.find(mem + 150, 1) == nullptr);
  c.insert(mem, 150, b);  // the same start, grown: replaced with its new region
  CHECK(c.find(mem + 120, 10)->region == b);
  c.erase_region(b);
  CHECK(c.size() == 0);
}
