// The License Portal needs no script to work; this one only adds the brand's colours and asks before an action
// that cannot be undone (a form with data-confirm).
document.addEventListener("DOMContentLoaded", () => {
  const body = document.body;
  for (const [name, value] of [["--primary", body.dataset.primary], ["--on-primary", body.dataset.onPrimary], ["--accent", body.dataset.accent]]) {
    if (/^#[0-9a-fA-F]{6}$/.test(value || "")) document.documentElement.style.setProperty(name, value);
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  }
});
