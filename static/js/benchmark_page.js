// The benchmark page: the leaderboard's chart and, while the job runs, its progress.
(function () {
  const chartData = document.getElementById("benchmark-chart-data");
  if (chartData) {
    drawLineChart(document.getElementById("benchmark-chart"), JSON.parse(chartData.textContent),
      "round", JSON.parse(document.getElementById("benchmark-chart-series").textContent),
      {xTitle: "round", yTitle: "edge F1 (mean over seeds)"});
  }
  // While it runs: poll the job's state; reload once it has finished (the leaderboard is ready).
  const running = document.querySelector("[data-testid=benchmark-running]");
  if (running) {
    const poll = async () => {
      const response = await fetch(running.dataset.stateUrl, {credentials: "same-origin"});
      if (response.ok) {
        const state = await response.json();
        document.getElementById("benchmark-progress").textContent = state.progress + "%";
        document.getElementById("benchmark-message").textContent = state.message;
        document.getElementById("benchmark-status").textContent = state.status;
        if (!state.is_active) { window.location.reload(); return; }
      }
      setTimeout(poll, 3000);
    };
    setTimeout(poll, 3000);
  }
})();
