// Why: the results of a sweep in the shape of the paper's resource tables (Table 3 of the explainer):
// per run N, Na, ra, M, C, D, D-hat, epochs, FLOPs/token against the reference, val BPC and its
// difference to the reference run, wall time; and the Efficiency Leverage of each MoE run from the fit
// of the dense runs (fit.h). Read from the run folders alone, so `moetrain sweep --collect DIR` works on
// a copied folder.
#pragma once

#include <string>
#include <vector>

#include "sweep/fit.h"
#include "sweep/sweep.h"

namespace mt {

struct ResultRow {
  std::string name;
  std::string status;     // finished, incomplete, failed or pending
  std::string reuse;      // none, strict, loose
  bool dense = false;     // activation rate 1
  // From summary.json when the run finished, else from the plan.
  double n_params = 0, n_active = 0, activation_rate = 0, flops_per_token = 0, compute = 0, tokens = 0,
         unique_tokens = 0, epochs = 0;
  double m_rel = 0;       // M / M of the reference (NaN without a reference)
  double val_loss = 0, val_bpc = 0, delta_bpc = 0, wall_seconds = 0, el = 0;  // NaN when unknown
  // Over all segments of a resumed run (summary.json, else the latest checkpoint); restarts: resumes.
  double restarts = 0;
};

struct SweepResults {
  std::string name;
  std::string reference;
  std::vector<ResultRow> rows;
  PowerLawFit el_fit;     // over the finished dense runs' (C, val BPC)
};

// Reads DIR/sweep.json and each run's summary.json.
SweepResults collect_sweep(const std::string& dir);

// One line per run: name,status,reuse,N,Na,ra,M,C,D,D_hat,epochs,M_over_M_ref,val_loss,val_bpc,
// delta_bpc,wall_seconds,EL,restarts (full precision; empty where unknown).
std::string results_csv(const SweepResults& results);

}  // namespace mt
