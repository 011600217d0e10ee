// SLURM host lists ("node[01-04,07],gpu-a[1-2]-ib,login5") expanded to host names.
#pragma once
#include <string>
#include <vector>

namespace xd::dist {

// Expands a SLURM host list: comma-separated entries, each with zero or more
// bracket groups of comma-separated numbers and ranges. Ranges keep the zero
// padding of their lower bound ("[08-10]" -> 08 09 10); several groups in one
// entry multiply ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2). Throws xd::Error on
// unbalanced brackets, a reversed range, or more than `max_hosts` hosts.
std::vector<std::string> expand_hostlist(const std::string& list, size_t max_hosts = 1u << 20);

// The first host of a SLURM host list, without expanding the rest.
std::string first_host(const std::string& list);

}  // namespace xd::dist
