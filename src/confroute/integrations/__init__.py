"""Integrations: data frames and Arrow tables, Ray Data, file loading, scikit-learn
(:class:`~confroute.integrations.sklearn.RoutedClassifier`) and Hugging Face ``datasets``."""
