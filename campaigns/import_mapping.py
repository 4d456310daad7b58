"""The admin import's column-mapping step: every column of the uploaded file with a few of its values and a choice
of campaign field, pre-filled from the proposal (campaigns.intake.columns). Field names are stable (`column_0`,
`column_1`, ... in the file's order) so the step can be driven by a browser test."""

import json

from django import forms

from campaigns.intake.columns import EXTRA, IGNORE, MappingProposal
from campaigns.models import Campaign

CHOICE_LABELS = {EXTRA: "Keep as an extra field (not sent)", IGNORE: "Ignore"}


def field_choices(column_map: list[str]) -> list[tuple[str, str]]:
    return [(name, name) for name in column_map] + list(CHOICE_LABELS.items())


class ColumnMappingForm(forms.Form):
    """The file stays in the upload's temporary storage between the steps; these hidden fields find it again."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.all(), widget=forms.HiddenInput)
    import_file_name = forms.CharField(widget=forms.HiddenInput)
    original_file_name = forms.CharField(widget=forms.HiddenInput)
    format = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, campaign: Campaign, header: list[str], proposal: MappingProposal | None = None, **kw):
        super().__init__(*args, **kw)
        self.header = header
        choices = field_choices(list(campaign.column_map))
        for position, name in enumerate(header):
            column = proposal.columns[position] if proposal else None
            field = forms.ChoiceField(
                label=name or f"(column {position + 1}, no header)",
                choices=choices if name.strip() else [(IGNORE, CHOICE_LABELS[IGNORE])],
                initial=column.field if column else IGNORE,
                help_text=column.reason if column else "",
            )
            field.samples = column.samples if column else []
            self.fields[f"column_{position}"] = field

    def clean(self):
        cleaned = super().clean()
        chosen = [cleaned.get(f"column_{i}") for i in range(len(self.header))]
        if "PhoneNumber" not in chosen:
            raise forms.ValidationError("Choose the column that holds the phone numbers (PhoneNumber).")
        twice = sorted({f for f in chosen if f not in (EXTRA, IGNORE, None) and chosen.count(f) > 1})
        if twice:
            raise forms.ValidationError(f"Each field can come from one column only: {', '.join(twice)} chosen twice.")
        return cleaned

    def column_choice(self) -> dict[str, str]:
        """Header -> field for every column with a header: the services' shape."""
        return {
            name: self.cleaned_data[f"column_{position}"] for position, name in enumerate(self.header) if name.strip()
        }


def column_choice_field() -> forms.CharField:
    """The confirmation form carries the mapping the preview used, as JSON."""
    return forms.CharField(widget=forms.HiddenInput, required=False)


def column_choice_from(text: str) -> dict[str, str]:
    try:
        choice = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in choice.items()} if isinstance(choice, dict) else {}
