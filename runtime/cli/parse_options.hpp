// The binaries' command lines: parse, --help, a usage error, the same in every main. Header only
// (Boost.Program_options); for the programs' edges, not the libraries.
#pragma once

#include <boost/program_options.hpp>
#include <iostream>
#include <optional>
#include <string>

namespace rfaas::cli {

// Parses argv into `vm`. nullopt: go on. Else the status to exit with: 0 after printing the
// options for --help, 2 after naming a bad command line (and printing the options).
inline std::optional<int> parse_options(int argc, char** argv, const boost::program_options::options_description& desc,
                                        boost::program_options::variables_map& vm, const std::string& program) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << "usage: " << program << " [options]\n" << desc << "\n";
    return 0;
  }
  return std::nullopt;
}

}  // namespace rfaas::cli
