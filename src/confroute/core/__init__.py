"""Value types, the class/label model, confidence scores, the decision rule and cost: the bottom layer."""
