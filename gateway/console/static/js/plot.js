// The delivery on a plain SVG plot, with no map tiles: the store (square), the customer (pin), the rider (dot and the
// trail behind it), the store's delivery radius and a scale bar. Coordinates are GCJ-02 (dispatch converts carriers'
// BD-09 and WGS-84), projected to local metres around the store (equirectangular: exact enough across a delivery
// range of a few kilometres).

import { clear, svg } from "./dom.js";

const SIZE = 320;
const MARGIN = 28;

export function metres(origin, point) {
  const lat0 = (origin.lat * Math.PI) / 180;
  return { x: (point.lng - origin.lng) * Math.cos(lat0) * 111320, y: (origin.lat - point.lat) * 110540 };
}

// points: { store: {lat,lng}, customer?: {lat,lng}, rider?: {lat,lng}, trail?: [{lat,lng}], radiusM?: number }
export function drawPlot(element, { store, customer = null, rider = null, trail = [], radiusM = null }) {
  clear(element);
  element.setAttribute("viewBox", `0 0 ${SIZE} ${SIZE}`);
  element.setAttribute("role", "img");
  if (!store) return;
  const located = [customer, rider, ...trail].filter(Boolean).map((p) => metres(store, p));
  const reach = Math.max(200, radiusM || 0, ...located.map((p) => Math.max(Math.abs(p.x), Math.abs(p.y))));
  const scale = (SIZE / 2 - MARGIN) / reach; // pixels per metre
  const at = (p) => {
    const m = metres(store, p);
    return { cx: SIZE / 2 + m.x * scale, cy: SIZE / 2 + m.y * scale };
  };
  const centre = SIZE / 2;
  if (radiusM) {
    element.append(svg("circle", { class: "plot-range", cx: centre, cy: centre, r: radiusM * scale }));
  }
  if (trail.length > 1) {
    const points = trail.map((p) => at(p)).map((p) => `${p.cx.toFixed(1)},${p.cy.toFixed(1)}`);
    element.append(svg("polyline", { class: "plot-trail", points: points.join(" ") }));
  }
  element.append(
    svg("rect", { class: "plot-store", "data-point": "store", x: centre - 7, y: centre - 7, width: 14, height: 14 }),
  );
  if (customer) {
    const c = at(customer);
    element.append(
      svg("path", {
        class: "plot-customer",
        "data-point": "customer",
        d: `M${c.cx} ${c.cy} l-7 -14 a7 7 0 1 1 14 0 z`,
      }),
    );
  }
  if (rider) {
    const r = at(rider);
    element.append(svg("circle", { class: "plot-rider", "data-point": "rider", cx: r.cx, cy: r.cy, r: 7 }));
  }
  element.append(...scaleBar(scale));
}

function scaleBar(scale) {
  const steps = [50, 100, 200, 500, 1000, 2000, 5000, 10000];
  const length = steps.find((m) => m * scale >= 50) || steps[steps.length - 1];
  const px = length * scale;
  const y = SIZE - 10;
  return [
    svg("line", { class: "plot-scale", x1: 10, y1: y, x2: 10 + px, y2: y }),
    svg("text", { class: "plot-scale-label", x: 10, y: y - 4 }, length >= 1000 ? `${length / 1000} km` : `${length} m`),
  ];
}
