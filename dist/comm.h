// MPI underneath ladon's distributed training: start-up, the communicator every dist/ piece takes,
// and the collectives they use. Ranks are started by mpirun or srun.
//
//   int main(int argc, char** argv) {
//     dist::Environment mpi(argc, argv);          // MPI_Init; an uncaught error ends every rank
//     dist::Communicator& world = dist::world();
//     ...
//   }
//
// Errors: a ladon::Error (or any exception) that escapes main on one rank, or is passed to
// abort_all(), prints "ladon rank R/N: <message>" on stderr and calls MPI_Abort, which ends every
// rank of the job with a non-zero exit at once, even ranks blocked in a collective: a bad input on
// one rank never leaves the others hanging. An MPI call that fails throws ladon::Error naming it.
#pragma once

#include "layer_fence.h"

// ladon uses MPI's C interface; the C++ bindings MPI deprecated do not compile under -Wextra -Werror.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <vector>

namespace ladon::dist {

class Environment {
 public:
  // MPI_Init_thread with MPI_THREAD_FUNNELED (only the main thread calls MPI; TBB workers never do).
  Environment(int& argc, char**& argv);
  ~Environment();  // MPI_Finalize
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
};

// Prints what the exception says with this rank's number and ends the whole job (exit code 1).
[[noreturn]] void abort_all(const std::exception& error);

class Communicator {
 public:
  // Takes a duplicate of comm (MPI_Comm_dup), so ladon's collectives never match a user's.
  explicit Communicator(MPI_Comm comm);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm handle() const { return comm_; }

  // The ranks with the same color form a new communicator, ordered by key then old rank
  // (MPI_Comm_split); a rank passing MPI_UNDEFINED gets nullptr.
  std::unique_ptr<Communicator> split(int color, int key) const;

  void barrier();
  // In place over every rank; every rank must call with the same count.
  void allreduce_sum(std::span<float> values);
  void allreduce_sum(std::span<double> values);
  void allreduce_sum(std::span<std::int64_t> values);
  void broadcast(std::span<float> values, int root);
  void broadcast(std::span<std::int64_t> values, int root);
  void broadcast(std::vector<char>& bytes, int root);  // resized on the receivers
  // Every rank sends send_counts[r] values to rank r and receives recv_counts[r] from it.
  void alltoallv(std::span<const float> send, const std::vector<int>& send_counts, std::span<float> recv,
                 const std::vector<int>& recv_counts);
  void alltoall(std::span<const std::int64_t> send, std::span<std::int64_t> recv);  // one value per rank
  // Sums send over every rank and leaves this rank block `rank()` of the sum: send holds the
  // blocks of every rank in rank order, counts[r] values each; recv has counts[rank()].
  void reduce_scatter_sum(std::span<const float> send, std::span<float> recv, const std::vector<int>& counts);
  // In place: block r of values (counts[r] values, blocks in rank order) is copied from rank r to
  // every rank.
  void allgather_blocks(std::span<float> values, const std::vector<int>& counts);
  // Every rank's list (of any length), on every rank: result[r] is rank r's.
  std::vector<std::vector<std::int64_t>> allgather(std::span<const std::int64_t> values);
  // Every rank's bytes on root (result[r] is rank r's); empty on the other ranks.
  std::vector<std::vector<char>> gather(const std::vector<char>& bytes, int root);
  // The values of every rank, concatenated in rank order (counts may differ per rank).
  std::vector<float> allgatherv(std::span<const float> values);

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

// A non-blocking sum in place over every rank of comm, by ring: a reduce-scatter, then an
// allgather, each size() - 1 steps of messages to the next rank and from the previous. Each rank
// sends and receives 2 (size() - 1) / size() of the values and adds up 1 / size() of them, and
// every element is summed once, on one rank, so every rank ends with the same bits. MPI_Iallreduce
// is not used because Open MPI's (libnbc) runs a binomial tree below 4 ranks or in place: the whole
// buffer goes to rank 0, is summed there alone and sent back, about twice as slow (4.4 MB on 2
// ranks, AMD EPYC Zen 5: 1.03 ms against 0.45 ms by ring).
//
// The values are the concatenation of segments (the gradients of a bucket, where they lie, so
// nothing is copied into a staging buffer and back); a block spanning several segments goes as
// one message per piece. Each element is multiplied by scale once its sum is complete, before it is
// passed on (scale 1 / size() gives the average, still the same bits on every rank).
//
// MPI advances messages only inside MPI calls, and the next step is posted only from test() or
// wait(): call test() often while other work runs. Every rank must start the same rings in the same
// order with the same segment sizes; tag tells apart the rings in flight at once on one communicator.
class RingAllreduce {
 public:
  RingAllreduce() = default;
  ~RingAllreduce();  // waits for a ring still in flight (values and the peers' messages need it)
  RingAllreduce(const RingAllreduce&) = delete;
  RingAllreduce& operator=(const RingAllreduce&) = delete;
  // Moving keeps a ring in flight valid: its messages point into heap buffers, which stay put.
  RingAllreduce(RingAllreduce&& other) noexcept;
  RingAllreduce& operator=(RingAllreduce&&) = delete;

  // The segments must stay alive and untouched until test() returns true or wait() returns.
  void start(MPI_Comm comm, std::vector<std::span<float>> segments, int tag, float scale = 1.0f);
  bool test();  // advances without blocking; true once the sum is in place (or nothing is in flight)
  void wait();  // until the sum is in place
  bool active() const { return step_ < steps_; }

 private:
  struct Piece {
    float* data;
    std::size_t size;
  };
  std::vector<Piece> block(int index) const;  // block index (mod size) of the near-equal split
  void post();                                // the messages of step_
  void finish_step();                         // adds the received block (reduce-scatter), next step

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, tag_ = 0;
  int step_ = 0, steps_ = 0;  // steps 0 .. size-2 reduce-scatter, size-1 .. 2 size-3 allgather
  float scale_ = 1.0f;
  std::vector<std::span<float>> segments_;
  std::vector<std::size_t> offsets_;  // segment i starts at offsets_[i] of the concatenation
  std::size_t total_ = 0;
  std::vector<float> received_;
  std::vector<MPI_Request> requests_;
};

// MPI_COMM_WORLD's duplicate, made on first use (after Environment).
Communicator& world();

namespace detail {
void check_mpi(int code, const char* call);  // throws ladon::Error "dist: <call>: <MPI's message>"
}

}  // namespace ladon::dist
