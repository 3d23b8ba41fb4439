// A small SVG line chart: drawLineChart(element, points, xKey, seriesKeys). No dependencies.
window.drawLineChart = function (element, points, xKey, seriesKeys) {
  const colours = ["#2f6fed", "#1a7f4b", "#c0392b", "#b7791f"];
  const width = element.clientWidth || 600, height = 180, pad = 32;
  const values = points.flatMap((p) => seriesKeys.map((k) => p[k]).filter((v) => v !== undefined));
  if (!points.length || !values.length) { element.textContent = "No data yet."; return; }
  const low = Math.min(0, ...values), high = Math.max(...values) || 1;
  const x = (i) => pad + (points.length === 1 ? 0 : (i * (width - 2 * pad)) / (points.length - 1));
  const y = (v) => height - pad - ((v - low) / (high - low || 1)) * (height - 2 * pad);
  const svg = [`<svg viewBox="0 0 ${width} ${height}" width="100%" height="${height}" role="img">`];
  svg.push(`<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#ccc"/>`);
  svg.push(`<text x="2" y="${y(high) + 4}" font-size="10">${high.toFixed(3)}</text>`);
  svg.push(`<text x="2" y="${y(low) + 4}" font-size="10">${low.toFixed(3)}</text>`);
  seriesKeys.forEach((key, s) => {
    const line = points
      .map((p, i) => (p[key] === undefined ? null : `${x(i)},${y(p[key])}`))
      .filter(Boolean)
      .join(" ");
    svg.push(`<polyline fill="none" stroke="${colours[s % 4]}" stroke-width="2" points="${line}"/>`);
    if (points.length <= 40) {
      points.forEach((p, i) => {
        if (p[key] !== undefined) {
          svg.push(`<circle cx="${x(i)}" cy="${y(p[key])}" r="3" fill="${colours[s % 4]}"><title>${key} ${p[key]}</title></circle>`);
        }
      });
    }
    svg.push(`<text x="${pad + 90 * s}" y="12" font-size="11" fill="${colours[s % 4]}">${key}</text>`);
  });
  const step = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((p, i) => {
    if (i % step === 0 || i === points.length - 1) {
      svg.push(`<text x="${x(i) - 8}" y="${height - 12}" font-size="10">${p[xKey]}</text>`);
    }
  });
  svg.push("</svg>");
  element.innerHTML = svg.join("");
};
