// The rule form shows the fieldsets of the chosen kind only; the server checks every field anyway.
(function () {
  const kind = document.querySelector("select[name=kind]");
  if (!kind) return;
  function show() {
    document.querySelectorAll("fieldset[data-kinds]").forEach(function (fieldset) {
      fieldset.hidden = !fieldset.dataset.kinds.split(" ").includes(kind.value);
    });
  }
  kind.addEventListener("change", show);
  show();
})();
