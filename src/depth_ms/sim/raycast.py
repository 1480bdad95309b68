"""Exact ray-primitive intersections.

Rays are ``origin + t * d`` with ``d`` given per pixel as separate component arrays (any shape);
each function returns the nearest hit parameter t > 0, or +inf where the ray misses. With the
optical-frame ray ``((u - cx) / fx, (v - cy) / fy, 1)``, t is the depth Z along the optical axis.
"""
from __future__ import annotations

import numpy as np

INF = np.inf


def ground_hits(origin: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Plane z = 0, seen from above."""
    if origin[2] <= 0:
        return np.full(dz.shape, INF)
    with np.errstate(divide="ignore"):
        t = -origin[2] / dz
    return np.where(dz < 0, t, INF)


def box_hits(origin: np.ndarray, inv_dx: np.ndarray, inv_dy: np.ndarray, inv_dz: np.ndarray,
             lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Axis-aligned box [lo, hi] by the slab test (``inv_d*`` = 1 / d, +-inf for zero components).

    Per axis, when the origin is outside the slab the plane facing it is the entry plane for every
    ray (rays going away get t_far < t_near and miss), so no per-pixel min/max is needed there.
    When it is inside the slab, that axis only bounds the exit (its entry parameter is <= 0).
    """
    near_terms, far_terms = [], []
    with np.errstate(invalid="ignore"):
        for axis, inv in enumerate((inv_dx, inv_dy, inv_dz)):
            to_lo, to_hi = lo[axis] - origin[axis], hi[axis] - origin[axis]
            if to_lo > 0:  # origin below the slab
                near_terms.append(to_lo * inv)
                far_terms.append(to_hi * inv)
            elif to_hi < 0:  # origin above the slab
                near_terms.append(to_hi * inv)
                far_terms.append(to_lo * inv)
            else:
                far_terms.append(np.maximum(to_lo * inv, to_hi * inv))
        if not near_terms:  # origin inside the box: its interior is never drawn
            return np.full(inv_dx.shape, INF)
        t_near, t_far = near_terms[0], far_terms[0]
        for term in near_terms[1:]:
            t_near = np.maximum(t_near, term)
        for term in far_terms[1:]:
            t_far = np.minimum(t_far, term)
        return np.where((t_near <= t_far) & (t_near > 0), t_near, INF)


def _nearest_root(half_b: np.ndarray, a: np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """Entry root of a t^2 + 2 half_b t + c = 0 for an origin outside (c > 0), in stable form c / q."""
    disc = half_b * half_b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = c / (np.sqrt(disc) - half_b)
    return np.where((disc >= 0) & (half_b < 0) & (t > 0), t, INF)


def sphere_hits(origin: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray,
                centre: np.ndarray, radius: float) -> np.ndarray:
    ox, oy, oz = origin - centre
    a = dx * dx + dy * dy + dz * dz
    half_b = ox * dx + oy * dy + oz * dz
    c = ox * ox + oy * oy + oz * oz - radius * radius
    if c <= 0:  # origin inside the sphere: the interior is never drawn
        return np.full(dx.shape, INF)
    return _nearest_root(half_b, a, c)


def cylinder_hits(origin: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray,
                  centre_xy: np.ndarray, radius: float, z_lo: float, z_hi: float) -> np.ndarray:
    """Vertical cylinder with flat caps; only the cap facing the origin can be an entry point."""
    ox, oy = origin[0] - centre_xy[0], origin[1] - centre_xy[1]
    oz = origin[2]
    c = ox * ox + oy * oy - radius * radius
    if c <= 0 and z_lo <= oz <= z_hi:
        return np.full(dx.shape, INF)
    t = INF
    if c > 0:  # side wall, entry root
        t = _nearest_root(ox * dx + oy * dy, dx * dx + dy * dy, c)
        with np.errstate(invalid="ignore"):  # inf * 0 on misses of horizontal rays
            z = oz + t * dz
        t = np.where((z >= z_lo) & (z <= z_hi), t, INF)
    cap_z = z_hi if oz > z_hi else (z_lo if oz < z_lo else None)
    if cap_z is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (cap_z - oz) / dz
            px, py = ox + t_cap * dx, oy + t_cap * dy
            on_cap = (t_cap > 0) & (px * px + py * py <= radius * radius)
        t = np.minimum(t, np.where(on_cap, t_cap, INF))
    return np.broadcast_to(t, dx.shape) if np.ndim(t) == 0 else t


def nearest_hit(world, origin: np.ndarray, direction: np.ndarray) -> float:
    """Ray parameter of the first thing ``origin + t * direction`` hits in ``world`` (ground or object), or inf."""
    dx, dy, dz = (np.array([float(v)]) for v in direction)  # (1,) each
    with np.errstate(divide="ignore"):
        inv = (1.0 / dx, 1.0 / dy, 1.0 / dz)
    hits = [ground_hits(origin, dz)]
    boxes, cylinders, spheres = world.boxes, world.cylinders, world.spheres
    hits += [box_hits(origin, *inv, boxes.lo[i], boxes.hi[i]) for i in range(len(boxes))]
    hits += [cylinder_hits(origin, dx, dy, dz, cylinders.centre_xy[i], cylinders.radius[i], cylinders.z_lo[i],
                           cylinders.z_hi[i]) for i in range(len(cylinders))]
    hits += [sphere_hits(origin, dx, dy, dz, spheres.centre[i], spheres.radius[i]) for i in range(len(spheres))]
    return float(np.min(np.concatenate(hits)))
