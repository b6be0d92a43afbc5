// Forms of the settings screens: labelled fields, and the API's refusal (a problem document) shown beside the form,
// each field error of a 422 next to the field it names (its `loc` after "body" or "query").

import { clear, h } from "./dom.js";

// A labelled input: field("name", "名称 Name", {required: true}).
export function field(name, label, attrs = {}) {
  return h("label", { class: "field", "data-field": name }, label, h("input", { name, ...attrs }));
}

export function choice(name, label, options, selected) {
  return h(
    "label",
    { class: "field", "data-field": name },
    label,
    h(
      "select",
      { name },
      options.map(([value, text]) => h("option", { value, selected: value === selected }, text)),
    ),
  );
}

export function checkbox(name, label, checked) {
  return h("label", { class: "check", "data-field": name }, h("input", { type: "checkbox", name, checked }), label);
}

// Clears what an earlier refusal marked on the form.
export function clearProblem(form) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const node of form.querySelectorAll(".invalid")) node.classList.remove("invalid");
  const summary = form.querySelector(".form-error");
  if (summary) clear(summary);
}

// Shows a refusal: the summary in the form's `.form-error` line, and each field error beside the most specific
// element whose `data-field` names a prefix of its path ("dispatch_strategy.max_tip_fen", then "dispatch_strategy").
export function showProblem(form, problem) {
  clearProblem(form);
  const summary = form.querySelector(".form-error");
  const errors = (problem.body && problem.body.errors) || [];
  const unplaced = [];
  for (const error of errors) {
    const path = (error.loc || []).filter((part) => part !== "body" && part !== "query").map(String);
    let placed = false;
    for (let length = path.length; length > 0 && !placed; length--) {
      const holder = form.querySelector(`[data-field="${CSS.escape(path.slice(0, length).join("."))}"]`);
      if (holder) {
        holder.classList.add("invalid");
        holder.append(h("span", { class: "field-error" }, `${path.slice(length).join(".")} ${error.msg}`.trim()));
        placed = true;
      }
    }
    if (!placed) unplaced.push(`${path.join(".")}: ${error.msg}`);
  }
  if (summary) summary.append([problem.message, ...unplaced].join(" · "));
}

// Submits a form through `act(data)`: the button is disabled meanwhile, a refusal lands on the form (and is
// rethrown to no one: the form shows it).
export function onSubmit(form, act) {
  form.noValidate = true; // the API decides, and says which field is wrong
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblem(form);
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await act(new FormData(form));
    } catch (problem) {
      showProblem(form, problem);
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

export function formError() {
  return h("p", { class: "error form-error", role: "alert" });
}

// A number typed by a person; null when empty or not a number, for the API to refuse with the field's name (NaN
// would travel as null anyway).
export function number(text) {
  const trimmed = String(text ?? "").trim();
  const value = Number(trimmed);
  return trimmed === "" || !Number.isFinite(value) ? null : value;
}

// Yuan typed by a person ("12.5") as fen; null when empty or not a number.
export function fen(text) {
  const value = number(text);
  return value === null ? null : Math.round(value * 100);
}
