// Why: the Efficiency Leverage of an MoE run (Tian et al., "Towards Greater Leverage"): fit the dense
// runs' loss against compute, L(C) = a C^b + c, then EL = C_dense(L_moe) / C_moe, the compute a dense
// model would need for the MoE's loss over the compute the MoE used.
#pragma once

#include <string>
#include <vector>

namespace mt {

// L(C) = a * C^b + c.
struct PowerLaw {
  double a = 0, b = 0, c = 0;
  double loss(double compute) const;
  // The compute at which the law reaches `loss`; NaN when it never does (loss <= c).
  double compute_for(double loss) const;
};

struct PowerLawFit {
  bool ok = false;
  PowerLaw law;
  int points = 0;
  int budgets = 0;        // distinct compute budgets among the points (1% apart)
  double rms = 0;         // root mean square residual in loss units
  std::string why;        // !ok: the reason, one line
};

// Least squares fit of L = a C^b + c with b < 0 and 0 <= c < min L: a grid over c with a linear fit of
// log(L - c) against log C at each, then Levenberg-Marquardt on (log a, b, c). Needs points at three or
// more distinct compute budgets.
PowerLawFit fit_power_law(const std::vector<double>& compute, const std::vector<double>& loss);

// EL = C_dense(loss) / compute; NaN when the dense law never reaches `loss`.
double efficiency_leverage(const PowerLaw& dense, double loss, double compute);

}  // namespace mt
