#include <catch2/catch.hpp>
#include <cstdint>

#include "registration_cache.hpp"

using rfaas::mpi::RegistrationCache;
using Lookup = RegistrationCache::Lookup;

TEST_CASE("registration cache: covered, new and growing ranges") {
  static uint8_t mem[4096];
  RegistrationCache c;
  CHECK(c.classify(mem, 10) == Lookup::new_range);
  CHECK(c.covers(mem, 0));  // nothing to send is always fine
  c.insert(mem + 100, 1000);
  CHECK(c.classify(mem + 100, 1000) == Lookup::covered);
  CHECK(c.classify(mem + 500, 600) == Lookup::covered);
  CHECK(c.classify(mem + 500, 601) == Lookup::new_range);   // runs past the end
  CHECK(c.classify(mem + 100, 1001) == Lookup::grows_existing);
  CHECK(c.classify(mem + 50, 10) == Lookup::new_range);     // before it
  CHECK(c.classify(mem + 1100, 1) == Lookup::new_range);    // just after it

  c.insert(mem + 100, 2000);  // replaces, does not add
  CHECK(c.size() == 1);
  CHECK(c.covers(mem + 2000, 100));

  c.insert(mem + 3000, 100);
  c.insert(mem + 10, 20);
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

TEST_CASE("registration cache follows the client's rule for overlapping ranges") {
  // The client looks only at the last registration starting at or before an address; the
  // cache must not claim zero-copy where the client would copy.
  static uint8_t mem[4096];
  RegistrationCache c;
  c.insert(mem, 4000);
  c.insert(mem + 100, 10);
  CHECK(c.classify(mem + 105, 5) == Lookup::covered);
  CHECK(c.classify(mem + 200, 10) == Lookup::new_range);
}
