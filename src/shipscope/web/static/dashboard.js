// Draws each chart from the figure its element carries, and submits the filter bar when a choice changes.
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
    if (form.classList.contains("filters")) {
      for (const select of form.querySelectorAll("select, input[type=date]")) {
        select.addEventListener("change", () => form.requestSubmit());
      }
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  enhanceFilters();
  drawCharts();
});
