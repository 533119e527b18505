"""Lens models: nerfstudio's OPENCV (radial-tangential) and OPENCV_FISHEYE (equidistant) cameras.

Everything here works in OpenCV's normalised image coordinates: x = (u - cx) / fx,
y = (v - cy) / fy for a pixel position (u, v) from the image's top left, so +x is right and
+y is DOWN, and the camera looks down +z. camera_directions turns pixels into the engine's
camera space (+X right, +Y up, looking down -Z) at the end.

Coefficients come as (..., 6) tensors in the order of transforms.json's keys k1, k2, k3, k4,
p1, p2 (captures.DISTORTION_KEYS). The radial-tangential model uses k1, k2, k3, p1, p2 (k4 is
unused, as in nerfstudio's OPENCV); the fisheye model uses k1..k4 (p1, p2 are unused, as in
OpenCV's cv::fisheye). Sources: OpenCV's camera calibration documentation (calib3d "Detailed
Description" and cv::fisheye), nerfstudio's nerfstudio/cameras/camera_utils.py
(radial_and_tangential_undistort, after MultiNeRF's camera_utils).
"""
from __future__ import annotations

import torch

# Fixed Newton iteration count (nerfstudio uses 10): enough for any lens a capture calibrates,
# and a fixed count keeps results bit for bit reproducible.
NEWTON_ITERATIONS = 10
# Newton steps whose Jacobian (determinant or derivative) is smaller than this are skipped.
NEWTON_EPS = 1e-9
# Below this radius (normalised units) a point is on the optical axis: no direction to scale.
AXIS_EPS = 1e-9


def _split(coeffs: torch.Tensor):
    """(..., 6) -> k1, k2, k3, k4, p1, p2, each (...)."""
    return coeffs.unbind(-1)


def _as_mask(fisheye, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(fisheye, dtype=torch.bool, device=like.device).expand(like.shape)


def distort_radial_tangential(x: torch.Tensor, y: torch.Tensor,
                              coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's radial-tangential model: undistorted (x, y) -> distorted (xd, yd), normalised coordinates.

    r² = x² + y², radial = 1 + k1 r² + k2 r⁴ + k3 r⁶,
    xd = x radial + 2 p1 x y + p2 (r² + 2 x²), yd = y radial + p1 (r² + 2 y²) + 2 p2 x y.
    x, y (...); coeffs (..., 6) k1, k2, k3, k4 (unused), p1, p2.
    """
    k1, k2, k3, _, p1, p2 = _split(coeffs)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def _fisheye_poly(theta: torch.Tensor, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """theta_d = theta (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸) and its derivative d theta_d / d theta."""
    k1, k2, k3, k4, _, _ = _split(coeffs)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
    return theta_d, slope


def distort_fisheye(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's fisheye (equidistant) model: undistorted (x, y) -> distorted (xd, yd), normalised coordinates.

    r = sqrt(x² + y²), theta = atan(r), theta_d = theta (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸),
    (xd, yd) = theta_d / r (x, y). Only points in front of the camera have undistorted
    normalised coordinates; undistort_fisheye handles fields of view beyond 180 degrees.
    x, y (...); coeffs (..., 6) k1, k2, k3, k4, p1 (unused), p2 (unused).
    """
    r = torch.sqrt(x * x + y * y)
    theta_d, _ = _fisheye_poly(torch.atan(r), coeffs)
    scale = torch.where(r > AXIS_EPS, theta_d / r.clamp(min=AXIS_EPS), torch.ones_like(r))
    return x * scale, y * scale


def distort(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, fisheye) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward lens model: undistorted normalised (x, y) -> distorted normalised (xd, yd).

    x, y (...) float; coeffs (..., 6) k1, k2, k3, k4, p1, p2; fisheye a bool or (...) bool
    tensor: OPENCV_FISHEYE where True, else OPENCV's radial-tangential model.
    """
    xd, yd = distort_radial_tangential(x, y, coeffs)
    mask = _as_mask(fisheye, x)
    if bool(mask.any()):
        fx, fy = distort_fisheye(x, y, coeffs)
        xd, yd = torch.where(mask, fx, xd), torch.where(mask, fy, yd)
    return xd, yd


def undistort_radial_tangential(xd: torch.Tensor, yd: torch.Tensor,
                                coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of distort_radial_tangential by NEWTON_ITERATIONS Newton steps from (x, y) = (xd, yd).

    As nerfstudio's radial_and_tangential_undistort: each step solves the 2x2 Jacobian system
    of the residual distort(x, y) - (xd, yd); steps with |det J| < NEWTON_EPS are skipped.
    Zero coefficients return (xd, yd) exactly. xd, yd (...); coeffs (..., 6); returns x, y (...).
    """
    k1, k2, k3, _, p1, p2 = _split(coeffs)
    x, y = xd, yd
    for _ in range(NEWTON_ITERATIONS):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        # d radial / dx = x * dradial, d radial / dy = y * dradial.
        dradial = 2 * (k1 + r2 * (2 * k2 + r2 * 3 * k3))
        res_x = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
        res_y = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
        j_xx = radial + x * x * dradial + 2 * p1 * y + 6 * p2 * x
        j_xy = x * y * dradial + 2 * p1 * x + 2 * p2 * y
        j_yy = radial + y * y * dradial + 6 * p1 * y + 2 * p2 * x
        det = j_xx * j_yy - j_xy * j_xy  # the Jacobian is symmetric
        ok = det.abs() > NEWTON_EPS
        safe = torch.where(ok, det, torch.ones_like(det))
        step_x = torch.where(ok, (res_x * j_yy - res_y * j_xy) / safe, torch.zeros_like(det))
        step_y = torch.where(ok, (res_y * j_xx - res_x * j_xy) / safe, torch.zeros_like(det))
        x, y = x - step_x, y - step_y
    return x, y


def undistort_fisheye(theta_d: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """theta (radians from the optical axis) with _fisheye_poly(theta) = theta_d, by Newton from theta = theta_d.

    theta_d (...) = the distorted radius sqrt(xd² + yd²); coeffs (..., 6). Steps whose
    derivative is below NEWTON_EPS are skipped; theta is kept >= 0.
    """
    theta = theta_d
    for _ in range(NEWTON_ITERATIONS):
        value, slope = _fisheye_poly(theta, coeffs)
        ok = slope.abs() > NEWTON_EPS
        safe = torch.where(ok, slope, torch.ones_like(slope))
        step = torch.where(ok, (value - theta_d) / safe, torch.zeros_like(slope))
        theta = (theta - step).clamp(min=0)
    return theta


def undistort(xd: torch.Tensor, yd: torch.Tensor, coeffs: torch.Tensor, fisheye) -> torch.Tensor:
    """Distorted normalised (xd, yd) -> (..., 3) unit ray directions in OpenCV's camera space (+x right, +y down,
    +z ahead).

    Radial-tangential: normalise(x, y, 1) of the undistorted point. Fisheye: theta solved from
    theta_d = sqrt(xd² + yd²), direction (sinθ xd / theta_d, sinθ yd / theta_d, cosθ): a
    direction rather than normalised coordinates, since fisheye views can exceed 180 degrees.
    xd, yd (...) float; coeffs (..., 6) k1, k2, k3, k4, p1, p2; fisheye a bool or (...) bool tensor.
    """
    x, y = undistort_radial_tangential(xd, yd, coeffs)
    dirs = torch.nn.functional.normalize(torch.stack([x, y, torch.ones_like(x)], dim=-1), dim=-1)
    mask = _as_mask(fisheye, xd)
    if bool(mask.any()):
        rd = torch.sqrt(xd * xd + yd * yd)
        theta = undistort_fisheye(rd, coeffs)
        # sin(theta) / theta_d -> 1 on the axis (theta ~ theta_d there).
        scale = torch.where(rd > AXIS_EPS, torch.sin(theta) / rd.clamp(min=AXIS_EPS), torch.ones_like(rd))
        fish = torch.stack([xd * scale, yd * scale, torch.cos(theta)], dim=-1)
        dirs = torch.where(mask[..., None], fish, dirs)
    return dirs


def camera_directions(px: torch.Tensor, py: torch.Tensor, intrinsics: torch.Tensor, coeffs: torch.Tensor,
                      fisheye: torch.Tensor) -> torch.Tensor:
    """Unit ray directions (n,3) in the engine's camera space (+X right, +Y up, looking down -Z) through pixels.

    px, py (n,) float pixel positions from the image's top left (a pixel's centre is its index
    + 0.5: callers pass centres); intrinsics (n,4) fx, fy, cx, cy in pixels; coeffs (n,6) k1,
    k2, k3, k4, p1, p2; fisheye (n,) bool (OPENCV_FISHEYE, else radial-tangential).
    Zero coefficients without fisheye give cameras.camera_rays' pinhole directions
    normalise((px - cx) / fx, -(py - cy) / fy, -1), bit for bit.
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    d = undistort((px - cx) / fx, (py - cy) / fy, coeffs, fisheye)
    # OpenCV (y down, z ahead) -> the engine's camera (y up, looking down -z).
    return torch.stack([d[..., 0], -d[..., 1], -d[..., 2]], dim=-1)
