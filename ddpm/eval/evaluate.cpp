#include "ddpm/eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"

namespace ddpm {

namespace {
enum : uint64_t {
  rng_eval_subset = 0xe7a101,  // random_subset's permutation
  rng_eval_noise = 0xe7a102,   // noise_images, index i * D + j
};
}  // namespace

Tensor prepare_images(const Tensor& images) {
  Tensor out(images.shape());
  for (int64_t i = 0; i < images.numel(); i++) {
    const float x = std::min(1.0f, std::max(-1.0f, images[i]));
    // k = round((x + 1) * 127.5) in 0..255, x = k / 127.5 - 1
    out[i] = std::nearbyint((x + 1.0f) * 127.5f) / 127.5f - 1.0f;
  }
  return out;
}

Tensor random_subset(const Tensor& images, int64_t n, uint64_t seed) {
  const int64_t N = images.size(0);
  DDPM_CHECK(n >= 0 && n <= N, "random_subset: " << n << " rows asked of " << images.shape_str());
  std::vector<int64_t> perm(N);
  std::iota(perm.begin(), perm.end(), 0);
  Generator gen(seed, make_stream(rng_eval_subset));
  for (int64_t i = N - 1; i > 0; i--) std::swap(perm[i], perm[gen.below(static_cast<uint64_t>(i + 1))]);
  Shape shape = images.shape();
  const int64_t row = images.numel() / N;
  shape[0] = n;
  Tensor out(shape);
  for (int64_t i = 0; i < n; i++)
    std::copy(images.data() + perm[i] * row, images.data() + (perm[i] + 1) * row, out.data() + i * row);
  return out;
}

Tensor noise_images(int64_t n, uint64_t seed) {
  Tensor x({n, 1, 28, 28});
  fill_normal(x.data(), x.numel(), RngKey{seed, make_stream(rng_eval_noise)});
  return prepare_images(x);
}

EvalReference make_reference(const Classifier& classifier, const Tensor& images, const std::string& name,
                             uint64_t seed) {
  EvalReference ref;
  ref.name = name;
  ref.n = images.size(0);
  ref.seed = seed;
  ref.features = classify(classifier, images).features;
  ref.gaussian = fit_gaussian(ref.features.data(), ref.n, Classifier::feature_dim);
  return ref;
}

QualityRow evaluate_images(const Classifier& classifier, const EvalReference& reference, const Tensor& images,
                           const std::string& name, int64_t k) {
  const int64_t N = images.size(0), D = Classifier::feature_dim;
  DDPM_CHECK(N > k, "evaluate_images: " << name << " has " << N << " images; precision/recall with k = " << k
                                        << " needs at least " << k + 1);
  const int64_t bad = first_non_finite(images);
  DDPM_CHECK(bad < 0, "evaluate_images: " << name << " has a non-finite value (" << images[bad] << " at index " << bad
                                          << ", image " << bad / (images.numel() / N) << ")");
  QualityRow row;
  row.name = name;
  row.n = N;
  const ClassifierOutputs out = classify(classifier, prepare_images(images));
  row.fld = frechet_distance(fit_gaussian(out.features.data(), N, D), reference.gaussian);
  // The real set for precision/recall: N reference features (all of them if fewer).
  row.pr_reference_n = std::min(N, reference.n);
  const Tensor real = random_subset(reference.features, row.pr_reference_n, reference.seed);
  row.pr = precision_recall(real.data(), row.pr_reference_n, out.features.data(), N, D, k);
  row.classes = class_statistics(out.probs.data(), N, Classifier::num_classes);
  return row;
}

ClassAgreement class_agreement(const Tensor& probs, const std::vector<int64_t>& labels) {
  DDPM_CHECK(probs.dim() == 2 && probs.size(0) == static_cast<int64_t>(labels.size()) && probs.size(1) >= 1,
             "class_agreement: probs " << probs.shape_str() << " must be [N, K] with one label per row ("
                                       << labels.size() << " labels)");
  const int64_t N = probs.size(0), K = probs.size(1);
  ClassAgreement a;
  a.per_class_agree.assign(static_cast<size_t>(K), 0);
  a.per_class_counted.assign(static_cast<size_t>(K), 0);
  for (int64_t i = 0; i < N; i++) {
    const int64_t want = labels[static_cast<size_t>(i)];
    if (want == K) continue;  // the null class: nothing was requested
    DDPM_CHECK(want >= 0 && want < K, "class_agreement: label " << want << " of image " << i << " is neither a class 0.."
                                                                << K - 1 << " nor the null class " << K);
    const float* row = probs.data() + i * K;
    const int64_t predicted = std::max_element(row, row + K) - row;  // first maximum on ties
    a.counted++;
    a.per_class_counted[static_cast<size_t>(want)]++;
    if (predicted == want) {
      a.agree++;
      a.per_class_agree[static_cast<size_t>(want)]++;
    }
  }
  return a;
}

SamplesFile load_samples(const std::string& path) {
  const SafeTensors st = load_safetensors(path);
  SamplesFile f;
  f.samples = st.at("samples");
  const Tensor& x = f.samples;
  DDPM_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
             path << ": tensor \"samples\" is " << x.shape_str() << ", expected [N, 1, 28, 28]");
  const int64_t bad = first_non_finite(x);
  DDPM_CHECK(bad < 0, path << ": tensor \"samples\" has a non-finite value (" << x[bad] << " at index " << bad
                           << ", image " << bad / 784 << "); the file is corrupt");
  if (const Tensor* found = st.find("labels")) {
    const Tensor& lab = *found;
    DDPM_CHECK(lab.dim() == 1 && lab.size(0) == x.size(0),
               path << ": tensor \"labels\" is " << lab.shape_str() << ", expected [" << x.size(0) << "]");
    const int64_t null_class = Classifier::num_classes;
    for (int64_t i = 0; i < lab.numel(); i++) {
      const float v = lab[i];
      DDPM_CHECK(v >= 0 && v <= null_class && v == std::floor(v),
                 path << ": tensor \"labels\" has " << v << " at index " << i << ", which is neither a class 0.."
                      << null_class - 1 << " nor the null class " << null_class);
      f.labels.push_back(static_cast<int64_t>(v));
    }
  }
  return f;
}

std::string format_agreement(const ClassAgreement& a, const std::string& name) {
  std::ostringstream os;
  os << "class agreement of " << name << ": " << a.agree << " / " << a.counted << " = " << std::fixed
     << std::setprecision(2) << 100.0 * a.rate() << "% of images classified as the requested class\n  per class:";
  for (size_t k = 0; k < a.per_class_counted.size(); k++)
    if (a.per_class_counted[k] > 0)
      os << "  " << k << ": " << std::setprecision(0) << 100.0 * a.per_class_agree[k] / a.per_class_counted[k] << "%";
  os << "\n";
  return os.str();
}

NllSummary evaluate_nll(const Schedule& s, const ModelFn& model, const Tensor& images, const std::string& data_name,
                        int64_t batch, int64_t stride, uint64_t seed, bool clip_x0,
                        const EvalProgress& progress, Communicator* comm) {
  const int64_t N = images.size(0);
  DDPM_CHECK(N >= 1 && batch >= 1 && stride >= 1,
             "evaluate_nll: images " << images.shape_str() << ", batch " << batch << ", stride " << stride);
  const int R = comm ? comm->size() : 1, me = comm ? comm->rank() : 0;
  const Share mine = share_of(N, R, me);
  // Per image: L_T, sum L_{t-1}, L_0 and the total, in nats; this rank's images first.
  constexpr int64_t kTerms = 4;
  std::vector<double> terms;
  std::string vlb_name;
  for (int64_t b0 = mine.first; b0 < mine.first + mine.count; b0 += batch) {
    const int64_t B = std::min(batch, mine.first + mine.count - b0);
    VlbOptions opts;
    opts.clip_x0 = clip_x0;
    opts.stride = stride;
    opts.first_index = b0;
    const VlbResult r = vlb_terms(s, model, rows(images, b0, B), seed, opts);
    for (int64_t i = 0; i < B; i++)
      terms.insert(terms.end(), {r.prior_nats[i], r.kl_sum_nats[i], r.decoder_nats[i], r.total_nats[i]});
    vlb_name = r.name;
    if (progress && me == 0) progress(b0 + B - mine.first, mine.count);
  }
  if (R > 1) {
    std::vector<int64_t> counts(static_cast<size_t>(R));
    int named = -1;  // the first rank with images names the bound
    for (int r = 0; r < R; r++) {
      counts[r] = share_of(N, R, r).count * kTerms;
      if (named < 0 && counts[r] > 0) named = r;
    }
    terms = allgatherv_doubles(*comm, terms, counts);
    broadcast_string(*comm, vlb_name, named);
  }
  NllSummary sum;
  sum.n = N;
  sum.stride = stride;
  sum.D = images.numel() / N;
  sum.T = s.T;
  double prior = 0, kl = 0, decoder = 0, total = 0;
  for (int64_t i = 0; i < N; i++) {  // in image order, whoever computed them
    prior += terms[i * kTerms];
    kl += terms[i * kTerms + 1];
    decoder += terms[i * kTerms + 2];
    total += terms[i * kTerms + 3];
  }
  // bits/dim = nats / (D ln 2), averaged over images
  const double per_bpd = 1.0 / (static_cast<double>(N) * sum.D * std::log(2.0));
  sum.prior_bpd = prior * per_bpd;
  sum.kl_sum_bpd = kl * per_bpd;
  sum.decoder_bpd = decoder * per_bpd;
  sum.total_bpd = total * per_bpd;
  sum.total_nats = total / N;
  sum.name = vlb_name + " on " + data_name + " (N = " + std::to_string(N) + ")";
  return sum;
}

std::string format_quality(const std::vector<QualityRow>& rows, const EvalReference& reference) {
  std::ostringstream os;
  char line[512];
  os << "Sample quality in the classifier's " << Classifier::feature_dim << "-d features; FLD against the "
     << reference.name << " (" << reference.n << " images), precision/recall (k = 3) against " << "N random "
     << reference.name << " images.\n";
  int width = 34;  // the set-name column grows to fit the longest name
  for (const QualityRow& r : rows) width = std::max(width, static_cast<int>(r.name.size()));
  std::snprintf(line, sizeof line, "  %-*s %6s %10s %10s %8s %12s %11s\n", width, "set", "N", "FLD", "precision",
                "recall", "entropy/bit", "confidence");
  os << line;
  for (const QualityRow& r : rows) {
    std::snprintf(line, sizeof line, "  %-*s %6lld %10.3f %10.4f %8.4f %12.4f %11.4f\n", width, r.name.c_str(),
                  static_cast<long long>(r.n), r.fld, r.pr.precision, r.pr.recall, r.classes.entropy_bits,
                  r.classes.mean_confidence);
    os << line;
  }
  os << "Class histogram of the predictions (digits 0..9):\n";
  for (const QualityRow& r : rows) {
    std::snprintf(line, sizeof line, "  %-*s", width, r.name.c_str());
    os << line;
    for (int64_t c : r.classes.histogram) {
      std::snprintf(line, sizeof line, " %6lld", static_cast<long long>(c));
      os << line;
    }
    os << "\n";
  }
  return os.str();
}

std::string format_nll(const NllSummary& nll) {
  std::ostringstream os;
  char line[256];
  os << "Negative log-likelihood bound: " << nll.name << ", T = " << nll.T << ", D = " << nll.D << "\n";
  std::snprintf(line, sizeof line, "  %-24s %10s\n", "term", "bits/dim");
  os << line;
  std::snprintf(line, sizeof line, "  %-24s %10.4f\n", "L_T (prior)", nll.prior_bpd);
  os << line;
  std::snprintf(line, sizeof line, "  %-24s %10.4f\n", "sum_t L_{t-1}", nll.kl_sum_bpd);
  os << line;
  std::snprintf(line, sizeof line, "  %-24s %10.4f\n", "L_0 (decoder)", nll.decoder_bpd);
  os << line;
  std::snprintf(line, sizeof line, "  %-24s %10.4f   (%.2f nats per image)\n", "total", nll.total_bpd,
                nll.total_nats);
  os << line;
  return os.str();
}

}  // namespace ddpm
