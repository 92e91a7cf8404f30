// Data-parallel training: every rank holds the whole model, runs its share of the global batch, and
// the gradients are averaged across ranks before the optimizer step, so every rank takes the same
// step a single process would take on the whole batch (each rank's loss a mean over its rows).
//
//   dist::DataParallel dp(model);                 // broadcasts parameters and buffers from rank 0
//   for (...) {
//     opt.zero_grad();
//     dp.backward(loss);                          // backward + gradient averaging, overlapped
//     opt.step();
//   }
//   { auto guard = dp.no_sync(); dp.backward(loss_a); }   // accumulate locally, no communication
//   dp.backward(loss_b);                                  // averages the accumulated gradients
//
// Buckets: the parameters, in reverse order (backward produces the last layers' gradients first),
// are packed into buckets of about bucket_mb megabytes. The first synchronised backward records
// the order its gradients really become final, and the buckets are laid out again in that order
// (rank 0's, so every rank has the same buckets), as PyTorch's DDP rebuilds its buckets: in MMoE
// the gates' gradients come after the experts' 4 MB first layer, and in reverse order they would
// hold that layer's bucket back until backward ends. During backward a GradReadyHook (core/)
// reports each parameter whose gradient is final; when a bucket's last gradient is in, its
// allreduce (a RingAllreduce, comm.h) starts while backward goes on with earlier layers, and each
// later gradient reported moves the rings in flight on by a step. Buckets start strictly in
// bucket order on every rank (a bucket ready early waits for the ones before it), so the
// collectives match across ranks whatever order the local pass completes them in. Parameters the
// loss does not depend on (found by walking its graph before backward) count as ready at once, so
// they never hold back the buckets behind them; their gradients are sent as zeros with a flag, and
// a parameter with no gradient on any rank keeps no gradient, as in a single process.
//
// The first bucket is small (first_bucket_mb, 1 MB by default, as PyTorch's DDP does): the last
// layers' gradients are ready first, and a small bucket of them starts communicating early in
// backward instead of waiting for 25 MB, so a model whose gradients fit one bucket still overlaps.
//
// Expert-parallel layers (dist::ExpertParallel, found in the model at construction): their
// experts' parameters live on one rank each, so they are neither broadcast nor averaged; their
// gradients, already summed over every rank's tokens on the owner, are divided by the world size.
//
// When gradients are set by other means (a Balancer's backward), call synchronize() afterwards:
// the same bucketed averaging, without the overlap.
#pragma once

#include "layer_fence.h"

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../nn/module.h"
#include "../nn/norm.h"
#include "comm.h"

namespace ladon::dist {

struct DataParallelOptions {
  double bucket_mb = 25;
  double first_bucket_mb = 1;  // the first bucket filled (the last parameters); capped at bucket_mb
  bool broadcast = true;  // copy rank 0's parameters and buffers to every rank at construction
  // Every nn::BatchNorm in the model normalises, in training, by the mean and variance of the
  // global batch (all ranks' rows), and its running statistics follow them: the model then trains
  // exactly as one process on the global batch would. Costs two small allreduces per layer in
  // forward and two in backward.
  bool sync_batch_norm = false;
};

class DataParallel {
 public:
  explicit DataParallel(nn::Module& model, Communicator& comm = world(), DataParallelOptions options = {});
  ~DataParallel();  // BatchNorms it synchronised go back to their own batch
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // loss.backward() with every gradient averaged across ranks by the time it returns (unless
  // inside no_sync()). Every rank must call it the same number of times.
  void backward(const Tensor& loss);
  // Averages the current .grad() of every parameter across ranks (blocking, bucketed).
  void synchronize();
  // Copies rank 0's parameters and buffers to every rank.
  void broadcast_state();

  class NoSync {
   public:
    explicit NoSync(DataParallel& dp) : dp_(dp), previous_(dp.sync_) { dp.sync_ = false; }
    ~NoSync() { dp_.sync_ = previous_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DataParallel& dp_;
    bool previous_;
  };
  // While the guard lives, backward() only accumulates into .grad(), with no communication.
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  std::size_t num_buckets() const { return buckets_.size(); }
  std::size_t num_rank_local() const { return local_.size(); }  // expert-parallel parameters left out
  // Which bucket each averaged parameter (model.parameters() order, expert shards left out) is in:
  // reverse order at first, the first synchronised backward's order after it.
  std::vector<std::size_t> bucket_of_parameters() const;

  // Timing of the last synchronised backward, for benchmarks: wall time inside backward(), and
  // the time spent waiting for allreduces after the local backward had finished (the part of the
  // communication not hidden behind computation).
  struct Timing {
    double backward_seconds = 0;
    double exposed_wait_seconds = 0;
    std::size_t buckets_started_in_backward = 0;  // the rest started after it (none, normally)
  };
  const Timing& last_timing() const { return timing_; }

 private:
  struct Bucket {
    std::vector<std::size_t> params;  // indices into params_
    std::vector<float> flags;         // per parameter: 1 if this rank has a gradient (then the average)
    std::vector<Tensor> grads;        // the gradients the ring in flight sums, held until it ends
    std::size_t pending = 0;          // gradients of this pass not yet final
    bool started = false;
    RingAllreduce ring;  // the average of grads (in place) and flags over the ranks
  };

  void layout_buckets(const std::vector<std::size_t>& order);  // packs params_ in this order
  void rebuild_buckets();                                      // in the order of ready_order_ (rank 0's)
  void begin_pass();
  void mark_unreached(const Tensor& loss);
  void on_ready(TensorImpl* leaf);
  void start_ready_buckets();
  void start(Bucket& bucket);
  void finish_pass();

  // A duplicate of the communicator given: the buckets' allreduces may start at different points
  // of backward on different ranks (a rank's pass may not reach some parameters), so they must not
  // share a communicator with collectives issued inside backward (dist::exchange).
  Communicator comm_;
  // Sums BatchNorm statistics with all_reduce_sum, on a communicator of its own (those collectives
  // run inside forward and backward, in graph order, not bucket order).
  struct SyncStatistics : nn::BatchStatistics {
    explicit SyncStatistics(MPI_Comm comm) : comm(comm) {}
    Tensor sum(const Tensor& x) override;
    Communicator comm;
  };
  std::unique_ptr<SyncStatistics> sync_statistics_;
  std::vector<nn::BatchNorm*> synced_;
  std::vector<Tensor> params_;  // the averaged ones: all but the expert-parallel shards
  std::vector<Tensor> local_;   // this rank's expert shards: gradients only divided by the world size
  std::unordered_map<TensorImpl*, std::size_t> index_;  // parameter -> its index
  std::vector<std::size_t> bucket_index_;               // parameter -> its bucket
  std::vector<Bucket> buckets_;
  std::size_t next_bucket_ = 0;  // the next bucket to start, in order
  double bucket_bytes_, first_bucket_bytes_;
  std::vector<std::size_t> ready_order_;  // parameters as the first synchronised backward made them final
  bool rebuilt_ = false;
  bool sync_ = true;
  nn::Module& model_;
  Timing timing_;
};

}  // namespace ladon::dist
