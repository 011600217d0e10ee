#include "xdistill/dist/launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::dist {
namespace {

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP};
std::atomic<int> g_pending_signal{0};

void remember_signal(int signum) { g_pending_signal.store(signum); }

struct Child {
  pid_t pid = -1;
  bool running = false;
};

[[noreturn]] void exec_child(const LocalLaunch& launch, const std::string& exe, int rank, int port) {
  const std::pair<const char*, std::string> vars[] = {
      {"RANK", std::to_string(rank)},           {"WORLD_SIZE", std::to_string(launch.nproc)},
      {"LOCAL_RANK", std::to_string(rank)},     {"LOCAL_WORLD_SIZE", std::to_string(launch.nproc)},
      {"MASTER_ADDR", launch.master_addr},      {"MASTER_PORT", std::to_string(port)}};
  for (const auto& [name, value] : vars) setenv(name, value.c_str(), 1);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : launch.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  std::fprintf(stderr, "error: launch: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
  _exit(127);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void signal_all(std::vector<Child>& children, int signum) {
  for (auto& c : children)
    if (c.running) kill(c.pid, signum);
}

}  // namespace

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launch: socket(): ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw Error(std::string("launch: cannot find a free port: ") + std::strerror(errno));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

int launch_local(const LocalLaunch& launch) {
  if (launch.nproc < 1) throw UsageError("launch: --nproc must be at least 1");
  if (launch.args.empty()) throw UsageError("launch: nothing to run: give the xdistill arguments after --");
  const std::string exe = launch.executable.empty() ? "/proc/self/exe" : launch.executable;
  int port = launch.master_port;
  if (port == 0) {
    const char* env_port = std::getenv("MASTER_PORT");
    port = env_port && *env_port ? std::atoi(env_port) : free_port();
  }
  if (port < 1 || port > 65535) throw UsageError("launch: master port " + std::to_string(port) + " is not in 1..65535");
  log::info("launch: ", launch.nproc, " processes, rendezvous ", launch.master_addr, ":", port);

  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction previous[std::size(kForwarded)];
  for (size_t i = 0; i < std::size(kForwarded); ++i) sigaction(kForwarded[i], &sa, &previous[i]);

  std::vector<Child> children(static_cast<size_t>(launch.nproc));
  for (int rank = 0; rank < launch.nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("launch: fork(): ") + std::strerror(errno));
    if (pid == 0) {
      for (size_t i = 0; i < std::size(kForwarded); ++i) sigaction(kForwarded[i], &previous[i], nullptr);
      exec_child(launch, exe, rank, port);
    }
    children[static_cast<size_t>(rank)] = {pid, true};
  }

  int result = 0, running = launch.nproc;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (const int signum = g_pending_signal.exchange(0)) {
      log::info("launch: forwarding signal ", signum, " to ", running, " processes");
      signal_all(children, signum);
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int rank = 0; rank < launch.nproc; ++rank) {
        Child& c = children[static_cast<size_t>(rank)];
        if (c.pid != pid) continue;
        c.running = false;
        --running;
        const int code = exit_code_of(status);
        if (code != 0 && result == 0 && !stopping) {
          result = code;
          log::error("launch: rank ", rank, " failed with exit code ", code, "; stopping the other ranks");
          stopping = true;
          signal_all(children, SIGTERM);
          stop_deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(launch.grace_seconds * 1000));
        }
      }
      continue;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      log::warn("launch: ranks still running ", launch.grace_seconds, " s after SIGTERM; killing them");
      signal_all(children, SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (size_t i = 0; i < std::size(kForwarded); ++i) sigaction(kForwarded[i], &previous[i], nullptr);
  return result;
}

}  // namespace xd::dist
