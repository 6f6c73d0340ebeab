// trustai dashboard: draw the charts whose figures the page carries as JSON, and reload the page when
// the run it shows moved on (a new ledger record, checkpoint or integrity state).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const data of document.querySelectorAll("script.figure")) {
    const target = document.getElementById(data.dataset.target);
    if (window.Plotly && target) {
      const figure = JSON.parse(data.textContent);
      Plotly.newPlot(target, figure.data, figure.layout, { displaylogo: false, responsive: true });
    }
  }
  const body = document.body;
  if (!body.dataset.poll) return;
  const every = Number(body.dataset.pollMs) || 3000;
  const tick = async () => {
    try {
      const response = await fetch(body.dataset.poll, { cache: "no-store" });
      if (response.ok) {
        const state = await response.json();
        if (state.version !== body.dataset.version) {
          location.reload();
          return;
        }
      }
    } catch (err) {
      // the server is away for a moment: ask again at the next tick
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
});
