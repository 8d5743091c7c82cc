/* The settings form, generated from an endpoint's input schema in /openapi.json (x-fal-order-properties
   order, schema defaults): builds the fields, reads and writes their values, resets them. The field whose
   schema has a "ui.field" (image_url, video_url) is the input widget's, above the form. Knows nothing of
   files or requests. */
import { S } from "./state.js";
import { $, el, humanize } from "./util.js";
import { unmarkField } from "./errors.js";

function resolveProp(schema, prop) {
  let out = { ...prop };
  const refs = [];
  if (prop.$ref) refs.push(prop.$ref);
  for (const part of prop.allOf || []) if (part.$ref) refs.push(part.$ref);
  for (const part of prop.anyOf || []) if (part.$ref) refs.push(part.$ref);
  for (const ref of refs) {
    const target = ref.split("/").slice(1).reduce((node, key) => (node ? node[key] : undefined), schema);
    if (target) out = { ...target, ...out, title: prop.title || undefined, description: prop.description || target.description };
  }
  if (!out.type && Array.isArray(prop.anyOf)) {
    const nonNull = prop.anyOf.find((p) => p.type && p.type !== "null");
    if (nonNull) out = { ...nonNull, ...out };
  }
  delete out.$ref;
  delete out.allOf;
  return out;
}

function findInputSchema(schema, endpoint) {
  const comps = (schema.components && schema.components.schemas) || {};
  const path = schema.paths && schema.paths[`/queue/${endpoint}`];
  const ref = path && path.post && path.post.requestBody && path.post.requestBody.content["application/json"].schema.$ref;
  return ref ? comps[ref.split("/").pop()] : undefined;
}

/** The form of `endpoint`'s input schema (replacing the one shown). */
export function buildForm(schema, endpoint) {
  const input = findInputSchema(schema, endpoint);
  if (!input) throw new Error(`the input schema of ${endpoint} was not found in /openapi.json`);
  const keys = Object.keys(input.properties || {});
  const order = (input["x-fal-order-properties"] || []).filter((k) => keys.includes(k));
  for (const k of keys) if (!order.includes(k)) order.push(k);
  S.order = order;
  S.required = input.required || [];
  S.props = {};
  for (const k of order) S.props[k] = resolveProp(schema, input.properties[k]);
  S.sourceKey = order.find((k) => S.props[k].ui && S.props[k].ui.field) || "image_url";
  S.sourceKind = (S.props[S.sourceKey] && S.props[S.sourceKey].ui && S.props[S.sourceKey].ui.field) || "image";

  const sourceProp = S.props[S.sourceKey];
  $("image-help").textContent = sourceProp && sourceProp.description ? sourceProp.description + "." : "";

  const box = $("fields");
  box.replaceChildren();
  // The image or video (the one required input) has its own widget above; the rest follow in schema order.
  for (const key of order) {
    if (key === S.sourceKey) continue;
    box.append(buildField(key, S.props[key]));
  }
}

function buildField(key, prop) {
  const id = `f-${key}`;
  const label = prop.title || humanize(key);
  const long = prop.description && prop.description.length > 110;
  const help = prop.description ? el("p", { class: long ? "help clamp" : "help", id: `help-${key}`, text: prop.description }) : null;
  let helpNode = help;
  if (long) {
    const more = el("button", { type: "button", class: "linkbtn more", "aria-expanded": "false", "aria-controls": `help-${key}`, text: "More" });
    more.addEventListener("click", () => {
      const open = help.classList.toggle("clamp");
      more.setAttribute("aria-expanded", String(!open));
      more.textContent = open ? "More" : "Less";
    });
    helpNode = el("div", { class: "help-wrap" }, help, more);
  }
  const error = el("p", { class: "field-error", id: `err-${key}`, "data-testid": `error-${key}`, hidden: true });
  const describedBy = [help ? `help-${key}` : null, `err-${key}`].filter(Boolean).join(" ");
  let control;
  if (prop.type === "boolean") {
    control = el("input", {
      type: "checkbox",
      class: "switch",
      role: "switch",
      id,
      name: key,
      "data-testid": `field-${key}`,
      "aria-describedby": describedBy,
    });
    control.checked = !!prop.default;
    return el(
      "div",
      { class: "field", "data-field": key },
      el("div", { class: "switch-row" }, el("div", { class: "switch-text" }, el("label", { for: id, text: label }), helpNode), control),
      error,
    );
  }
  if (Array.isArray(prop.enum)) {
    control = el("select", { id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
    for (const value of prop.enum) control.append(el("option", { value: String(value), text: String(value) }));
    if (prop.default != null) control.value = String(prop.default);
    if (key === "model" && S.models) {
      // What the chosen name runs on this server (its model map), beside fal's own description.
      const runs = el("p", { class: "help model-runs", id: "runs-model", "data-testid": "model-runs", "aria-live": "polite" });
      const show = () => {
        const entry = S.models.v2 && S.models.v2[control.value];
        if (!entry) runs.textContent = "";
        else if (entry.title) runs.textContent = `Runs here: ${entry.title} (${entry.checkpoint})`;
        else runs.textContent = `Runs here: ${entry.model.split(/[\\/]/).pop()}`; // a checkpoint file: its name
        runs.title = entry ? entry.checkpoint : "";
      };
      control.addEventListener("change", show);
      show();
      return el("div", { class: "field", "data-field": key }, el("label", { for: id, text: label }), control, runs, helpNode, error);
    }
  } else if (prop.type === "integer" || prop.type === "number") {
    control = el("input", {
      type: "number",
      id,
      name: key,
      "data-testid": `field-${key}`,
      "aria-describedby": describedBy,
      min: prop.minimum,
      max: prop.maximum,
      step: prop.type === "integer" ? 1 : "any",
    });
    if (prop.default != null) control.value = String(prop.default);
  } else {
    control = el("input", { type: "text", id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
    if (prop.default != null) control.value = String(prop.default);
  }
  return el("div", { class: "field", "data-field": key }, el("label", { for: id, text: label }), control, helpNode, error);
}

function fieldControl(key) {
  return document.getElementById(`f-${key}`);
}

export function formValues() {
  const values = {};
  for (const key of S.order) {
    if (key === S.sourceKey) continue;
    const prop = S.props[key];
    const control = fieldControl(key);
    if (!control) continue;
    if (prop.type === "boolean") values[key] = control.checked;
    else if (prop.type === "integer" || prop.type === "number") {
      if (control.value !== "") values[key] = Number(control.value);
    } else if (Array.isArray(prop.enum)) {
      const match = prop.enum.find((v) => String(v) === control.value);
      values[key] = match === undefined ? control.value : match;
    } else if (control.value !== "" || S.required.includes(key)) values[key] = control.value;
  }
  return values;
}

export function setFormValues(input) {
  for (const key of S.order) {
    if (key === S.sourceKey || !(key in input)) continue;
    const control = fieldControl(key);
    if (!control) continue;
    if (control.type === "checkbox") control.checked = !!input[key];
    else control.value = String(input[key]);
  }
}

/** Back to the schema's defaults (the caller refreshes what shows the values, e.g. the snippet). */
export function resetForm() {
  for (const key of S.order) {
    if (key === S.sourceKey) continue;
    const control = fieldControl(key);
    const prop = S.props[key];
    if (!control) continue;
    if (control.type === "checkbox") control.checked = !!prop.default;
    else control.value = prop.default == null ? "" : String(prop.default);
    unmarkField(key);
  }
}
