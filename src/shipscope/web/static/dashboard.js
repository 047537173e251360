// Draws each chart from the figure its element carries, and keeps empty filter fields out of the URL.
"use strict";

function drawCharts() {
  const config = { displaylogo: false, displayModeBar: false, responsive: true };
  for (const element of document.querySelectorAll("[data-figure]")) {
    const figure = JSON.parse(element.dataset.figure);
    window.Plotly.newPlot(element, figure.data, figure.layout, config).then(() => {
      element.dataset.rendered = "true";
    });
  }
}

function enhanceFilters() {
  for (const form of document.querySelectorAll("form.filters, form.narrow")) {
    // Empty fields stay out of the URL, so a shared link carries only the choices made.
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if (field.name && field.value === "") field.disabled = true;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  enhanceFilters();
  drawCharts();
});
