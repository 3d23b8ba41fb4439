// The confirm step of deploying and destructive forms (form[data-confirm]): a <dialog> asks the
// form's question; "Confirm" submits with confirmed=yes. Without JavaScript the server asks on a
// confirm page instead (apps/dashboard/confirm.py), so the step is never skipped.
(function () {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return;
  const question = document.getElementById("confirm-question");
  const yes = dialog.querySelector("[value=yes]");
  let pending = null;

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches("form[data-confirm]") || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    pending = form;
    question.textContent = form.dataset.confirm;
    const submit = form.querySelector("button[type=submit], button:not([type])");
    yes.textContent = (submit && submit.dataset.confirmLabel) || (submit && submit.textContent.trim()) || "Confirm";
    yes.className = form.dataset.danger === "yes" ? "danger" : "";
    dialog.showModal();
  });

  dialog.addEventListener("close", () => {
    const form = pending;
    pending = null;
    if (!form || dialog.returnValue !== "yes") return;
    let field = form.querySelector("input[name=confirmed]");
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirmed";
      form.appendChild(field);
    }
    field.value = "yes";
    form.dataset.confirmed = "yes";
    form.submit();
  });
})();
