// Vectorised exp and GELU on 16 lanes, shared by the activations and attention.
#pragma once

#include "common.h"

namespace depth_ms {

// exp(z) for z <= 0 (|relative error| ~2e-7, Cephes expf polynomial); z below -87 gives exp(-87).
inline Vec16 ExpNonPositive(Vec16 z) {
  const Vec16 lowest = Vec16{} - 87.0f, magic = Vec16{} + 12582912.0f;  // 1.5 * 2^23: rounds to integers
  z = z < lowest ? lowest : z;
  const Vec16 n = (z * 1.44269504088896341f + magic) - magic;  // round(z / ln 2)
  const Vec16 r = (z - n * 0.693359375f) + n * 2.12194440e-4f;  // z - n ln 2 (Cody-Waite)
  Vec16 p = Vec16{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  typedef int Vec16i __attribute__((vector_size(64)));
  const Vec16i bits = (__builtin_convertvector(n, Vec16i) + 127) << 23;  // 2^n
  Vec16 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Exact GELU x Phi(x) = relu(x) - |x| erfc(|x| / sqrt 2) / 2, erfc by Abramowitz & Stegun 7.1.26
// (|error| <= 7e-7 against float64); NaN stays NaN, infinities give NaN (as the ops fallback).
inline Vec16 GeluErf(Vec16 x) {
  const Vec16 zero = Vec16{}, one = Vec16{} + 1.0f;
  const Vec16 a = x < zero ? -x : x;
  const Vec16 t = one / (a * (0.3275911f * 0.7071067811865476f) + 1.0f);
  const Vec16 poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                                      t * 1.061405429f))));
  return (x > zero ? x : zero) - a * poly * ExpNonPositive(x * x * -0.5f) * 0.5f;
}

}  // namespace depth_ms
