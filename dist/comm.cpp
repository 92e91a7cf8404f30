#include "comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "../core/error.h"

namespace ladon::dist {

namespace detail {
void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  ladon::detail::fail("dist", call, ": ", std::string(text, static_cast<std::size_t>(length)));
}
}  // namespace detail

using detail::check_mpi;

namespace {

std::unique_ptr<Communicator> g_world;

// An exception that escapes main reaches std::terminate without unwinding: say what it was and end
// the job, rather than let the other ranks wait forever in their next collective.
[[noreturn]] void terminate_job() {
  if (std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::exception& e) {
      abort_all(e);
    } catch (...) {
    }
  }
  std::fprintf(stderr, "ladon: std::terminate called without an exception; ending every rank\n");
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

int to_int(std::size_t n, const char* op) {
  LADON_CHECK(n <= static_cast<std::size_t>(std::numeric_limits<int>::max()), op, n,
              " values in one call: MPI counts are int");
  return static_cast<int>(n);
}

}  // namespace

Environment::Environment(int& argc, char**& argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  LADON_CHECK(!initialised, "dist::Environment", "MPI is already initialised (one Environment per process)");
  int provided = 0;
  check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as codes (turned into ladon::Error) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  std::set_terminate(terminate_job);
}

Environment::~Environment() {
  g_world.reset();
  MPI_Finalize();
}

void abort_all(const std::exception& error) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::fprintf(stderr, "ladon rank %d/%d: %s\n", rank, size, error.what());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

Communicator& world() {
  if (!g_world) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    LADON_CHECK(initialised, "dist::world", "MPI is not initialised: create a dist::Environment first");
    g_world = std::make_unique<Communicator>(MPI_COMM_WORLD);
  }
  return *g_world;
}

Communicator::Communicator(MPI_Comm comm) {
  check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Communicator::~Communicator() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) const {
  MPI_Comm part = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
  if (part == MPI_COMM_NULL) return nullptr;
  auto result = std::make_unique<Communicator>(part);
  MPI_Comm_free(&part);
  return result;
}

void Communicator::barrier() { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

void Communicator::allreduce_sum(std::span<float> values) {
  check_mpi(
      MPI_Allreduce(MPI_IN_PLACE, values.data(), to_int(values.size(), "allreduce_sum"), MPI_FLOAT, MPI_SUM, comm_),
      "MPI_Allreduce");
}
void Communicator::allreduce_sum(std::span<double> values) {
  check_mpi(
      MPI_Allreduce(MPI_IN_PLACE, values.data(), to_int(values.size(), "allreduce_sum"), MPI_DOUBLE, MPI_SUM, comm_),
      "MPI_Allreduce");
}
void Communicator::allreduce_sum(std::span<std::int64_t> values) {
  check_mpi(
      MPI_Allreduce(MPI_IN_PLACE, values.data(), to_int(values.size(), "allreduce_sum"), MPI_INT64_T, MPI_SUM, comm_),
      "MPI_Allreduce");
}

RingAllreduce::~RingAllreduce() {
  // A destructor must not throw: an MPI failure here leaves the job to MPI's own error path.
  if (active()) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
}

RingAllreduce::RingAllreduce(RingAllreduce&& other) noexcept
    : comm_(other.comm_),
      rank_(other.rank_),
      size_(other.size_),
      tag_(other.tag_),
      step_(other.step_),
      steps_(other.steps_),
      scale_(other.scale_),
      segments_(std::move(other.segments_)),
      offsets_(std::move(other.offsets_)),
      total_(other.total_),
      received_(std::move(other.received_)),
      requests_(std::move(other.requests_)) {
  other.step_ = other.steps_ = 0;
}

void RingAllreduce::start(MPI_Comm comm, std::vector<std::span<float>> segments, int tag, float scale) {
  LADON_CHECK(!active(), "RingAllreduce", "start while the previous sum is still in flight");
  comm_ = comm;
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
  tag_ = tag;
  scale_ = scale;
  segments_ = std::move(segments);
  offsets_.clear();
  total_ = 0;
  for (const std::span<float>& s : segments_) {
    offsets_.push_back(total_);
    total_ += s.size();
  }
  to_int(total_, "RingAllreduce");
  step_ = 0;
  steps_ = 2 * (size_ - 1);
  if (!active()) {  // one rank: the sum is the values
    if (scale_ != 1.0f)
      for (const std::span<float>& s : segments_)
        for (float& v : s) v *= scale_;
    return;
  }
  received_.resize(total_ / static_cast<std::size_t>(size_) + 1);
  post();
}

std::vector<RingAllreduce::Piece> RingAllreduce::block(int index) const {
  const std::size_t p = static_cast<std::size_t>(size_);
  const auto i = static_cast<std::size_t>(((index % size_) + size_) % size_);
  const std::size_t begin = i * total_ / p, end = (i + 1) * total_ / p;
  std::vector<Piece> pieces;
  for (std::size_t s = 0; s < segments_.size(); ++s) {
    const std::size_t lo = std::max(begin, offsets_[s]), hi = std::min(end, offsets_[s] + segments_[s].size());
    if (lo < hi) pieces.push_back({segments_[s].data() + (lo - offsets_[s]), hi - lo});
  }
  return pieces;
}

void RingAllreduce::post() {
  // Reduce-scatter step s: send block rank - s (this rank's partial sum of it) to the next rank,
  // receive block rank - s - 1 from the previous one and add it in. After size - 1 steps block
  // rank + 1 is complete here. Allgather step s: pass on block rank + 1 - s, receive block rank - s.
  // Both sides cut a block into the same pieces (the segment sizes match), one message each.
  const bool reduce = step_ < size_ - 1;
  const int s = reduce ? step_ : step_ - (size_ - 1);
  const std::vector<Piece> send = block(reduce ? rank_ - s : rank_ + 1 - s);
  const std::vector<Piece> recv = block(reduce ? rank_ - s - 1 : rank_ - s);
  const int next = (rank_ + 1) % size_, previous = (rank_ + size_ - 1) % size_;
  requests_.assign(send.size() + recv.size(), MPI_REQUEST_NULL);
  std::size_t r = 0, offset = 0;
  for (const Piece& piece : recv) {
    float* into = reduce ? received_.data() + offset : piece.data;
    check_mpi(MPI_Irecv(into, static_cast<int>(piece.size), MPI_FLOAT, previous, tag_, comm_, &requests_[r++]),
              "MPI_Irecv");
    offset += piece.size;
  }
  for (const Piece& piece : send)
    check_mpi(MPI_Isend(piece.data, static_cast<int>(piece.size), MPI_FLOAT, next, tag_, comm_, &requests_[r++]),
              "MPI_Isend");
}

void RingAllreduce::finish_step() {
  if (step_ < size_ - 1) {
    // The last reduce-scatter step completes this rank's block: scale it before passing it on.
    const bool complete = step_ == size_ - 2;
    const float* in = received_.data();
    for (const Piece& piece : block(rank_ - step_ - 1)) {
      for (std::size_t i = 0; i < piece.size; ++i) piece.data[i] += in[i];
      if (complete && scale_ != 1.0f)
        for (std::size_t i = 0; i < piece.size; ++i) piece.data[i] *= scale_;
      in += piece.size;
    }
  }
  if (++step_ < steps_) post();
}

bool RingAllreduce::test() {
  while (active()) {
    int done = 0;
    check_mpi(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE),
              "MPI_Testall");
    if (!done) return false;
    finish_step();
  }
  return true;
}

void RingAllreduce::wait() {
  while (active()) {
    check_mpi(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    finish_step();
  }
}

void Communicator::broadcast(std::span<float> values, int root) {
  check_mpi(MPI_Bcast(values.data(), to_int(values.size(), "broadcast"), MPI_FLOAT, root, comm_), "MPI_Bcast");
}
void Communicator::broadcast(std::span<std::int64_t> values, int root) {
  check_mpi(MPI_Bcast(values.data(), to_int(values.size(), "broadcast"), MPI_INT64_T, root, comm_), "MPI_Bcast");
}
void Communicator::broadcast(std::vector<char>& bytes, int root) {
  std::int64_t n = static_cast<std::int64_t>(bytes.size());
  broadcast(std::span<std::int64_t>(&n, 1), root);
  bytes.resize(static_cast<std::size_t>(n));
  check_mpi(MPI_Bcast(bytes.data(), to_int(bytes.size(), "broadcast"), MPI_CHAR, root, comm_), "MPI_Bcast");
}

void Communicator::alltoallv(std::span<const float> send, const std::vector<int>& send_counts, std::span<float> recv,
                             const std::vector<int>& recv_counts) {
  const auto n = static_cast<std::size_t>(size_);
  LADON_CHECK(send_counts.size() == n && recv_counts.size() == n, "alltoallv", send_counts.size(), " send and ",
              recv_counts.size(), " receive counts for ", size_, " ranks");
  std::vector<int> send_offsets(n, 0), recv_offsets(n, 0);
  std::exclusive_scan(send_counts.begin(), send_counts.end(), send_offsets.begin(), 0);
  std::exclusive_scan(recv_counts.begin(), recv_counts.end(), recv_offsets.begin(), 0);
  LADON_CHECK(static_cast<std::size_t>(send_offsets.back() + send_counts.back()) == send.size() &&
                  static_cast<std::size_t>(recv_offsets.back() + recv_counts.back()) == recv.size(),
              "alltoallv", "counts do not add up to the buffers (", send.size(), " to send, ", recv.size(),
              " to receive)");
  check_mpi(MPI_Alltoallv(send.data(), send_counts.data(), send_offsets.data(), MPI_FLOAT, recv.data(),
                          recv_counts.data(), recv_offsets.data(), MPI_FLOAT, comm_),
            "MPI_Alltoallv");
}

void Communicator::alltoall(std::span<const std::int64_t> send, std::span<std::int64_t> recv) {
  LADON_CHECK(send.size() == static_cast<std::size_t>(size_) && recv.size() == send.size(), "alltoall", send.size(),
              " values to send and ", recv.size(), " to receive for ", size_, " ranks");
  check_mpi(MPI_Alltoall(send.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, comm_), "MPI_Alltoall");
}

void Communicator::reduce_scatter_sum(std::span<const float> send, std::span<float> recv,
                                      const std::vector<int>& counts) {
  LADON_CHECK(counts.size() == static_cast<std::size_t>(size_), "reduce_scatter_sum", counts.size(), " counts for ",
              size_, " ranks");
  LADON_CHECK(std::accumulate(counts.begin(), counts.end(), std::size_t{0}) == send.size() &&
                  static_cast<std::size_t>(counts[static_cast<std::size_t>(rank_)]) == recv.size(),
              "reduce_scatter_sum", "counts do not match the buffers (", send.size(), " to send, ", recv.size(),
              " to receive)");
  check_mpi(MPI_Reduce_scatter(send.data(), recv.data(), counts.data(), MPI_FLOAT, MPI_SUM, comm_),
            "MPI_Reduce_scatter");
}

void Communicator::allgather_blocks(std::span<float> values, const std::vector<int>& counts) {
  LADON_CHECK(counts.size() == static_cast<std::size_t>(size_) &&
                  std::accumulate(counts.begin(), counts.end(), std::size_t{0}) == values.size(),
              "allgather_blocks", counts.size(), " counts for ", size_, " ranks do not add up to ", values.size(),
              " values");
  std::vector<int> offsets(counts.size(), 0);
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), 0);
  check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, values.data(), counts.data(), offsets.data(), MPI_FLOAT,
                           comm_),
            "MPI_Allgatherv");
}

std::vector<std::vector<std::int64_t>> Communicator::allgather(std::span<const std::int64_t> values) {
  int mine = to_int(values.size(), "allgather");
  std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(counts.size(), 0);
  check_mpi(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "MPI_Allgather");
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), 0);
  std::vector<std::int64_t> all(static_cast<std::size_t>(offsets.back() + counts.back()));
  check_mpi(
      MPI_Allgatherv(values.data(), mine, MPI_INT64_T, all.data(), counts.data(), offsets.data(), MPI_INT64_T, comm_),
      "MPI_Allgatherv");
  std::vector<std::vector<std::int64_t>> out(counts.size());
  for (std::size_t r = 0; r < counts.size(); ++r)
    out[r].assign(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
  return out;
}

std::vector<std::vector<char>> Communicator::gather(const std::vector<char>& bytes, int root) {
  int mine = to_int(bytes.size(), "gather");
  std::vector<int> counts(static_cast<std::size_t>(size_), 0), offsets(counts.size(), 0);
  check_mpi(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm_), "MPI_Gather");
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), 0);
  std::vector<char> all(rank_ == root ? static_cast<std::size_t>(offsets.back() + counts.back()) : 0);
  check_mpi(MPI_Gatherv(bytes.data(), mine, MPI_CHAR, all.data(), counts.data(), offsets.data(), MPI_CHAR, root, comm_),
            "MPI_Gatherv");
  std::vector<std::vector<char>> out;
  if (rank_ != root) return out;
  out.resize(counts.size());
  for (std::size_t r = 0; r < counts.size(); ++r)
    out[r].assign(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
  return out;
}

std::vector<float> Communicator::allgatherv(std::span<const float> values) {
  int mine = to_int(values.size(), "allgatherv");
  std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(counts.size(), 0);
  check_mpi(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "MPI_Allgather");
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), 0);
  std::vector<float> all(static_cast<std::size_t>(offsets.back() + counts.back()));
  check_mpi(MPI_Allgatherv(values.data(), mine, MPI_FLOAT, all.data(), counts.data(), offsets.data(), MPI_FLOAT, comm_),
            "MPI_Allgatherv");
  return all;
}

}  // namespace ladon::dist
